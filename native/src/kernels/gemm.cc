#include "kernels/gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace tunekit {

namespace {

// Storage on a 64-byte boundary (one cache line, one AVX-512 vector), left uninitialized.
template <typename T>
class Aligned {
 public:
  explicit Aligned(size_t count) : storage_(new T[count + 64 / sizeof(T)]) {
    const uintptr_t address = reinterpret_cast<uintptr_t>(storage_.get());
    data_ = reinterpret_cast<T*>((address + 63) & ~uintptr_t(63));
  }
  T* data() { return data_; }

 private:
  std::unique_ptr<T[]> storage_;
  T* data_;
};
using AlignedFloats = Aligned<float>;
using AlignedHalves = Aligned<uint16_t>;

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

// How many blocks of rows to cut `tiles` row tiles into: at least `fewest`, and more when there are
// too few column tasks to keep every thread busy (each block reads its columns of B again).
size_t row_blocks(size_t tiles, size_t fewest, size_t column_tasks, size_t threads) {
  size_t blocks = std::max<size_t>(1, fewest);
  if (column_tasks * blocks < 2 * threads) blocks = ceil_div(2 * threads, column_tasks);
  // A few large tasks: make their count a multiple of the thread count, so none waits on one more.
  if (column_tasks * blocks < 8 * threads)
    blocks = ceil_div(ceil_div(column_tasks * blocks, threads) * threads, column_tasks);
  return std::min(tiles, blocks);
}

// The tasks of an accumulated product: groups of panels of nr columns (at most `width` columns, about
// kAccumulateSpan, fewer when there are few panels per thread) by blocks of row tiles. The panels are
// dealt out evenly (groups differ by one panel at most): the pool hands each thread a run of tasks,
// and 32 panels cut 6, 6, 6, 6, 6, 2 left one thread 18 panels and the other 14.
struct AccumulateTasks {
  size_t nr, panels, width, groups, blocks, tiles_per_block;
  // What task `task` covers: columns [n0, n0 + cols) of n and row tiles [t0, t1) (none when t0 >= t1).
  struct Span {
    size_t n0, cols, t0, t1;
  };
  Span span(size_t task, size_t n, size_t tiles) const {
    const size_t group = task / blocks, t0 = (task % blocks) * tiles_per_block;
    const size_t n0 = group * panels / groups * nr, n1 = std::min(n, (group + 1) * panels / groups * nr);
    return {n0, n1 - n0, t0, std::min(tiles, t0 + tiles_per_block)};
  }
  size_t count() const { return groups * blocks; }
};

AccumulateTasks accumulate_tasks(size_t tiles, size_t panels, size_t nr, size_t threads);

// Products of fewer multiply-adds than this run on the calling thread: waking the pool would cost
// more than it saves (a LoRA adapter's matrices while decoding one token, say).
constexpr size_t kInlineWork = size_t(1) << 18;

// No pool: on the calling thread.
void run(ThreadPool* pool, bool parallel, size_t n, const std::function<void(size_t, size_t, size_t)>& body) {
  if (pool && parallel)
    pool->parallel_for(n, body);
  else if (n > 0)
    body(0, n, 0);
}
void run(ThreadPool& pool, bool parallel, size_t n, const std::function<void(size_t, size_t, size_t)>& body) {
  run(&pool, parallel, n, body);
}

// About half of a core's L2: the rows of A that a forward task sweeps for every panel of B.
constexpr size_t kForwardBlockBytes = 512 * 1024;
// Rows of B decoded together in a forward task (then run dot_cols at a time).
constexpr size_t kForwardPanelRows = 48;
// Columns of B decoded together in an accumulated task: long enough spans to pay for each call.
constexpr size_t kAccumulateSpan = 256;
// A task's packed panels for one chunk of k (about a third of a core's L2), and the row tiles run
// through them together (their rows of C, 48 columns wide, stay in L1 across the chunk's blocks of k).
constexpr size_t kChunkBytes = 384 * 1024;
constexpr size_t kRowBlock = 16;

AccumulateTasks accumulate_tasks(size_t tiles, size_t panels, size_t nr, size_t threads) {
  const size_t group = std::max<size_t>(1, std::min(ceil_div(kAccumulateSpan, nr), panels / (2 * threads)));
  const size_t groups = ceil_div(panels, group);
  const size_t blocks = row_blocks(tiles, 1, groups, threads);
  return {nr, panels, ceil_div(panels, groups) * nr, groups, blocks, ceil_div(tiles, blocks)};
}

}  // namespace

RowSpans dense_rows(const float* data, size_t stride) {
  return [data, stride](size_t row, size_t col, size_t, float*) { return data + row * stride + col; };
}

// Tasks are (panel of B's rows, block of A's rows: more than one block only to give every thread
// work). A task decodes its panel once, whole rows of k, then sweeps its rows of A in sub-blocks that
// fit L2 beside the panel: each group of dot_cols rows of the panel stays in L1 while a sub-block's
// row tiles come from L2. (Decoding a panel again for each sub-block cost a fifth of a training step
// on a 151,936-row BF16 head.)
namespace {

void transposed_product(const Kernels& kernels, ThreadPool* pool, size_t m, size_t n, size_t k, const float* a,
                        size_t lda, const RowSpans& b, float* c, size_t ldc, const Epilogue* epilogue) {
  if (m == 0 || n == 0) return;
  const size_t DR = kernels.dot_rows, DC = kernels.dot_cols;
  const size_t panel_rows = ceil_div(kForwardPanelRows, DC) * DC;
  const size_t panels = ceil_div(n, panel_rows), tiles = ceil_div(m, DR);
  const size_t block_tiles_fit = std::max<size_t>(1, kForwardBlockBytes / (std::max<size_t>(k, 1) * 4 * DR));
  const size_t blocks = row_blocks(tiles, 1, panels, pool ? pool->size() : 1);
  const size_t tiles_per_block = ceil_div(tiles, blocks);

  run(pool, m * n * k >= kInlineWork, panels * blocks, [&](size_t begin, size_t end, size_t) {
    AlignedFloats decoded(panel_rows * k);
    std::vector<const float*> rows(panel_rows);
    for (size_t task = begin; task < end; task++) {
      const size_t panel = task / blocks, block = task % blocks;
      const size_t n0 = panel * panel_rows, count = std::min(panel_rows, n - n0);
      const size_t t0 = block * tiles_per_block, t1 = std::min(tiles, t0 + tiles_per_block);
      if (t0 >= t1) continue;
      for (size_t r = 0; r < count; r++) rows[r] = b(n0 + r, 0, k, decoded.data() + r * k);
      for (size_t r = count; r < panel_rows; r++) rows[r] = rows[0];
      for (size_t s0 = t0; s0 < t1; s0 += block_tiles_fit) {
        const size_t s1 = std::min(t1, s0 + block_tiles_fit);
        for (size_t j = 0; j < count; j += DC) {
          const size_t cols = std::min(DC, count - j);
          for (size_t t = s0; t < s1; t++) {
            const size_t i = t * DR;
            kernels.dot_tile(a + i * lda, lda, rows.data() + j, k, c + i * ldc + n0 + j, ldc, std::min(DR, m - i),
                             cols);
          }
        }
        if (epilogue) (*epilogue)(s0 * DR, std::min(m, s1 * DR) - s0 * DR, n0, count);
      }
    }
  });
}

}  // namespace

void multiply_transposed(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a,
                         size_t lda, const RowSpans& b, float* c, size_t ldc, const Epilogue* epilogue) {
  transposed_product(kernels, &pool, m, n, k, a, lda, b, c, ldc, epilogue);
}

void multiply_transposed(const Kernels& kernels, size_t m, size_t n, size_t k, const float* a, size_t lda,
                         const RowSpans& b, float* c, size_t ldc) {
  transposed_product(kernels, nullptr, m, n, k, a, lda, b, c, ldc, nullptr);
}

// A is packed once, tile by tile of gemm_mr rows ([k][mr], all of k). Tasks are (group of panels of
// gemm_nr columns, block of row tiles); a task decodes its columns of B gemm_kc rows at a time into
// [kc][nr] panels and runs every row tile of its block against each panel while it sits in L1.
namespace {

void accumulated_product(const Kernels& kernels, ThreadPool* pool, size_t m, size_t n, size_t k, const float* a,
                         size_t lda, bool a_transposed, const RowSpans& b, float* c, size_t ldc,
                         const Epilogue* epilogue) {
  if (m == 0 || n == 0 || k == 0) return;
  const size_t MR = kernels.gemm_mr, NR = kernels.gemm_nr, KC = kernels.gemm_kc;
  const size_t tiles = ceil_div(m, MR), panels = ceil_div(n, NR), threads = pool ? pool->size() : 1;
  const bool parallel = m * n * k >= kInlineWork;

  AlignedFloats packed_a(tiles * MR * k);
  run(pool, parallel, tiles, [&](size_t begin, size_t end, size_t) {
    for (size_t t = begin; t < end; t++) {
      float* out = packed_a.data() + t * MR * k;
      const size_t row0 = t * MR, rows = std::min(MR, m - row0);
      for (size_t kk = 0; kk < k; kk++) {
        for (size_t i = 0; i < rows; i++)
          out[kk * MR + i] = a_transposed ? a[kk * lda + row0 + i] : a[(row0 + i) * lda + kk];
        for (size_t i = rows; i < MR; i++) out[kk * MR + i] = 0.0f;
      }
    }
  });

  const AccumulateTasks tasks = accumulate_tasks(tiles, panels, NR, threads);

  run(pool, parallel, tasks.count(), [&](size_t begin, size_t end, size_t) {
    AlignedFloats packed_b(KC * tasks.width);
    AlignedFloats scratch(tasks.width);
    for (size_t task = begin; task < end; task++) {
      const auto [n0, cols, t0, t1] = tasks.span(task, n, tiles);
      if (t0 >= t1) continue;
      for (size_t k0 = 0; k0 < k; k0 += KC) {
        const size_t kc = std::min(KC, k - k0);
        // B's rows [k0, k0 + kc), columns [n0, n0 + cols), as panels [p][kc][NR], zero past column n.
        for (size_t kk = 0; kk < kc; kk++) {
          const float* span = b(k0 + kk, n0, cols, scratch.data());
          for (size_t p = 0; p * NR < cols; p++) {
            float* out = packed_b.data() + p * kc * NR + kk * NR;
            const size_t count = std::min(NR, cols - p * NR);
            std::memcpy(out, span + p * NR, count * sizeof(float));
            std::fill(out + count, out + NR, 0.0f);
          }
        }
        for (size_t p = 0; p * NR < cols; p++) {
          const float* panel = packed_b.data() + p * kc * NR;
          const size_t column = n0 + p * NR, panel_cols = std::min(NR, cols - p * NR);
          for (size_t t = t0; t < t1; t++) {
            const size_t row0 = t * MR;
            kernels.gemm_tile(kc, packed_a.data() + t * MR * k + k0 * MR, panel, c + row0 * ldc + column, ldc,
                              std::min(MR, m - row0), panel_cols);
            if (epilogue && k0 + kc == k) (*epilogue)(row0, std::min(MR, m - row0), column, panel_cols);
          }
        }
      }
    }
  });
}

}  // namespace

void multiply_add(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a, size_t lda,
                  bool a_transposed, const RowSpans& b, float* c, size_t ldc, const Epilogue* epilogue) {
  accumulated_product(kernels, &pool, m, n, k, a, lda, a_transposed, b, c, ldc, epilogue);
}

void multiply_add(const Kernels& kernels, size_t m, size_t n, size_t k, const float* a, size_t lda, bool a_transposed,
                  const RowSpans& b, float* c, size_t ldc) {
  accumulated_product(kernels, nullptr, m, n, k, a, lda, a_transposed, b, c, ldc, nullptr);
}

// ---- bf16 inputs -----------------------------------------------------------------------------
// Both products as one blocked product C (+)= A · B on the accumulated tiles (pairs of k): A [m × k]
// rounded once into tiles, B decoded and rounded panel by panel. Each element sums its pairs in k
// order from zero (forward) or from C (accumulated), whatever the cut into tiles, blocks or threads.

namespace {

// Fills panels [p][kc_pairs][NR][2] with B's rows [k0, k0 + kc) and columns [n0, n0 + cols), zero past
// column n and row k.
using PackPanels = std::function<void(size_t k0, size_t kc, size_t n0, size_t cols, uint16_t* panels)>;

void multiply_bf16(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a, size_t lda,
                   const PackPanels& pack_b, float* c, size_t ldc, bool accumulate, const Epilogue* epilogue) {
  const size_t MR = kernels.gemm_mr, NR = kernels.gemm_nr, KC = kernels.bf16_kc;
  const size_t tiles = ceil_div(m, MR), panels = ceil_div(n, NR), threads = pool.size();
  const size_t pairs = ceil_div(k, 2);
  const bool parallel = m * n * k >= kInlineWork;

  // A as tiles [pairs][MR][2]: each row rounded once (an odd k's last pair ends in zero, rows past m
  // are zero), then the tile's rows transposed into pairs (32-bit words) sixteen at a time.
  AlignedHalves packed_a(tiles * MR * 2 * pairs);
  run(pool, parallel && tiles > 1, tiles, [&](size_t begin, size_t end, size_t) {
    std::vector<uint16_t> rows(MR * 2 * pairs);
    std::vector<const uint16_t*> pointers(MR);
    for (size_t t = begin; t < end; t++) {
      for (size_t i = 0; i < MR; i++) {
        const size_t r = t * MR + i;
        uint16_t* row = rows.data() + i * 2 * pairs;
        pointers[i] = row;
        if (r < m) {
          kernels.f32_to_bf16(a + r * lda, row, k);
          if (k % 2) row[k] = 0;
        } else {
          std::fill(row, row + 2 * pairs, uint16_t(0));
        }
      }
      kernels.bf16_transpose_pairs(pointers.data(), MR, pairs,
                                   reinterpret_cast<uint32_t*>(packed_a.data() + t * MR * 2 * pairs), MR);
    }
  });

  const AccumulateTasks tasks = accumulate_tasks(tiles, panels, NR, threads);

  // A task packs its panels a chunk of k at a time (whole blocks of KC, as many as fit kChunkBytes),
  // then runs blocks of kRowBlock row tiles through them: panel by panel, each block of k in turn
  // (its part of the panel in L1) against the block's tiles, whose rows of C stay in L1 from one
  // block of k to the next (sweeping all of m per block of k sent C, 1.2 MB a task, to memory and
  // back each time; the head's logits are 201 MB).
  const size_t block_halves = KC * tasks.width;  // one block of k's panels, KC rows by `width` columns
  const size_t chunk_blocks = std::max<size_t>(1, kChunkBytes / (block_halves * sizeof(uint16_t)));
  run(pool, parallel, tasks.count(), [&](size_t begin, size_t end, size_t) {
    AlignedHalves packed_b(chunk_blocks * block_halves);
    for (size_t task = begin; task < end; task++) {
      const auto [n0, cols, t0, t1] = tasks.span(task, n, tiles);
      if (t0 >= t1) continue;
      for (size_t c0 = 0; c0 < k; c0 += chunk_blocks * KC) {
        const size_t c1 = std::min(k, c0 + chunk_blocks * KC);
        for (size_t k0 = c0; k0 < c1; k0 += KC)
          pack_b(k0, std::min(KC, k - k0), n0, cols, packed_b.data() + (k0 - c0) / KC * block_halves);
        for (size_t r0 = t0; r0 < t1; r0 += kRowBlock) {
          const size_t r1 = std::min(t1, r0 + kRowBlock);
          for (size_t p = 0; p * NR < cols; p++) {
            const size_t column = n0 + p * NR, panel_cols = std::min(NR, cols - p * NR);
            for (size_t k0 = c0; k0 < c1; k0 += KC) {
              const size_t kc_pairs = ceil_div(std::min(KC, k - k0), 2);
              const uint16_t* panel = packed_b.data() + (k0 - c0) / KC * block_halves + p * kc_pairs * 2 * NR;
              for (size_t t = r0; t < r1; t++) {
                const size_t row0 = t * MR;
                kernels.bf16_gemm_tile(kc_pairs, packed_a.data() + t * MR * 2 * pairs + (k0 / 2) * 2 * MR, panel,
                                       c + row0 * ldc + column, ldc, std::min(MR, m - row0), panel_cols,
                                       accumulate || k0 > 0);
              }
            }
            if (epilogue && c1 == k) (*epilogue)(r0 * MR, std::min(m, r1 * MR) - r0 * MR, column, panel_cols);
          }
        }
      }
    }
  });
}

}  // namespace

Bf16Rows rounded_rows(const Kernels& kernels, const RowSpans& rows) {
  return [&kernels, rows](size_t row, size_t col, size_t count, uint16_t* scratch) {
    thread_local std::vector<float> decoded;
    if (decoded.size() < count) decoded.resize(count);
    kernels.f32_to_bf16(rows(row, col, count, decoded.data()), scratch, count);
    return static_cast<const uint16_t*>(scratch);
  };
}

// B = Wᵀ: a panel's column j is W's row n0 + j, whose pairs of k are 32-bit words already: sixteen
// rows at a time transposed into the panel.
void multiply_transposed_bf16(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a,
                              size_t lda, const Bf16Rows& b, float* c, size_t ldc, const Epilogue* epilogue) {
  if (m == 0 || n == 0) return;
  const size_t NR = kernels.gemm_nr;
  const auto pack = [&](size_t k0, size_t kc, size_t n0, size_t cols, uint16_t* panels) {
    const size_t kc_pairs = ceil_div(kc, 2);
    thread_local std::vector<uint16_t> scratch;
    scratch.resize(16 * 2 * kc_pairs);
    const uint16_t* rows[16];
    for (size_t p = 0; p * NR < cols; p++) {
      uint32_t* out = reinterpret_cast<uint32_t*>(panels + p * kc_pairs * 2 * NR);
      const size_t count = std::min(NR, cols - p * NR);
      for (size_t j0 = 0; j0 < NR; j0 += 16) {
        const size_t group = j0 < count ? std::min<size_t>(16, count - j0) : 0;
        for (size_t j = 0; j < group; j++) {
          uint16_t* row = scratch.data() + j * 2 * kc_pairs;
          rows[j] = b(n0 + p * NR + j0 + j, k0, kc, row);
          if (kc % 2) {  // an odd last row of k: its pair's second half is zero
            if (rows[j] != row) std::memcpy(row, rows[j], kc * sizeof(uint16_t));
            row[kc] = 0;
            rows[j] = row;
          }
        }
        if (group > 0) kernels.bf16_transpose_pairs(rows, group, kc_pairs, out + j0, NR);
        for (size_t q = 0; q < kc_pairs; q++) std::fill(out + q * NR + j0 + group, out + q * NR + j0 + 16, 0u);
      }
    }
  };
  multiply_bf16(kernels, pool, m, n, k, a, lda, pack, c, ldc, false, epilogue);
}

// B's rows two at a time, interleaved into pairs.
void multiply_add_bf16(const Kernels& kernels, ThreadPool& pool, size_t m, size_t n, size_t k, const float* a,
                       size_t lda, const Bf16Rows& b, float* c, size_t ldc, const Epilogue* epilogue) {
  if (m == 0 || n == 0 || k == 0) return;
  const size_t NR = kernels.gemm_nr;
  const auto pack = [&](size_t k0, size_t kc, size_t n0, size_t cols, uint16_t* panels) {
    const size_t kc_pairs = ceil_div(kc, 2);
    thread_local std::vector<uint16_t> first, second, zeros;
    first.resize(cols);
    second.resize(cols);
    zeros.assign(cols, 0);
    for (size_t q = 0; q < kc_pairs; q++) {
      const size_t row = k0 + 2 * q;
      const uint16_t* even = b(row, n0, cols, first.data());
      const uint16_t* odd = row + 1 < k0 + kc ? b(row + 1, n0, cols, second.data()) : zeros.data();
      for (size_t p = 0; p * NR < cols; p++) {
        uint32_t* out = reinterpret_cast<uint32_t*>(panels + p * kc_pairs * 2 * NR + q * 2 * NR);
        const size_t count = std::min(NR, cols - p * NR);
        kernels.bf16_interleave(even + p * NR, odd + p * NR, count, out);
        std::fill(out + count, out + NR, 0u);
      }
    }
  };
  multiply_bf16(kernels, pool, m, n, k, a, lda, pack, c, ldc, true, epilogue);
}

}  // namespace tunekit
