// Packed, cache-blocked matrix products for the linear layers (forward and backward) once a batch
// has enough rows to reuse each weight: the weight is decoded to fp32 a block at a time (it may be
// BF16, F16 or NF4) and swept by the register tiles of the kernel table.
//
// Results do not depend on the thread count: the tiles sum each element in a fixed order
// (Kernels::dot_tile, Kernels::gemm_tile), whichever thread computes it and however the product is
// cut into blocks.
#pragma once
#include <cstddef>
#include <functional>

#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace tunekit {

// A matrix read by rows: returns columns [col, col + count) of `row` as fp32, either a pointer into
// the matrix or `scratch` (room for count floats) filled by decoding.
using RowSpans = std::function<const float*(size_t row, size_t col, size_t count, float* scratch)>;

// The rows of a plain fp32 matrix, `stride` floats apart.
RowSpans dense_rows(const float* data, size_t stride);

// Run on a block of C once its sums are final (rows [row0, row0 + rows), columns [col0, col0 + cols)),
// by the thread that made it, while the block is in cache: what a layer adds to its product (a bias,
// LoRA's term) without reading C from memory again.
using Epilogue = std::function<void(size_t row0, size_t rows, size_t col0, size_t cols)>;

// C [m × n] = A [m × k] · Bᵀ, with A's rows lda floats apart and B [n × k] read by rows: a linear
// layer's forward y = x Wᵀ, W as it is stored ([out × in]); then `epilogue` on each block of C.
void multiply_transposed(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a,
                         size_t lda, const RowSpans& b, float* c, size_t ldc, const Epilogue* epilogue = nullptr);

// C [m × n] += op(A) · B, with B [k × n] read by rows and op(A) [m × k] either A (rows lda floats
// apart) or, when a_transposed, Aᵀ of an A stored [k × m]: a linear layer's input gradient
// dx += dy W, and (transposed) the weight gradients of LoRA's matrices; then `epilogue` on each block.
void multiply_add(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a, size_t lda,
                  bool a_transposed, const RowSpans& b, float* c, size_t ldc, const Epilogue* epilogue = nullptr);

// Both on the calling thread alone (inside a task of the pool): the same bits.
void multiply_transposed(const Kernels& kernels, size_t m, size_t n, size_t k, const float* a, size_t lda,
                         const RowSpans& b, float* c, size_t ldc);
void multiply_add(const Kernels& kernels, size_t m, size_t n, size_t k, const float* a, size_t lda, bool a_transposed,
                  const RowSpans& b, float* c, size_t ldc);

// A matrix read by rows as bf16: columns [col, col + count) of `row`, either a pointer into the
// matrix (BF16 storage) or `scratch` (room for count values) filled by decoding and rounding.
using Bf16Rows = std::function<const uint16_t*(size_t row, size_t col, size_t count, uint16_t* scratch)>;
// Rows decoded to fp32 by `rows`, then rounded to nearest even.
Bf16Rows rounded_rows(const Kernels& kernels, const RowSpans& rows);

// The same two products with bf16 inputs and fp32 sums (kernels.has_bf16() must hold): A rounded to
// bf16 once (nearest even), B read as bf16, both run on bf16_gemm_tile: each element sums its pairs
// of k in order, whatever the product's size or cut (so a row gets the same bits alone as in a
// batch). multiply_transposed_bf16 writes C; multiply_add_bf16 adds to it and takes A untransposed.
void multiply_transposed_bf16(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a,
                              size_t lda, const Bf16Rows& b, float* c, size_t ldc, const Epilogue* epilogue = nullptr);
void multiply_add_bf16(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a,
                       size_t lda, const Bf16Rows& b, float* c, size_t ldc, const Epilogue* epilogue = nullptr);

}  // namespace tunekit
