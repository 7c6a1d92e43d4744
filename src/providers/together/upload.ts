/**
 * Uploading a training file the way Together's SDKs do:
 * 1. `POST /files?file_name=…&file_type=jsonl&purpose=fine-tune` (the same fields again as a form body,
 *    as together-typescript src/lib/upload.ts sends them) answers 302: `Location` is a pre-signed URL,
 *    `X-Together-File-Id` the file's id. The redirect is not followed: the bytes go there with a PUT.
 * 2. `PUT` the bytes to that URL, without Together's credentials.
 * 3. `POST /files/{id}/preprocess` starts Together's processing and answers the file, as the Python
 *    SDKs do (together-py src/together/lib/resources/files.py `UploadManager.callback`, and the older
 *    together-python filemanager.py). The TypeScript SDK goes straight to step 4; the call is kept
 *    because the Python SDKs, the ones Together documents for fine-tuning, still make it.
 * 4. `GET /files/{id}` until `processing_status` says COMPLETED; FAILED or INVALID_FORMAT raise the
 *    validation report's error (together-py src/together/types/file_response.py).
 */
import { ProviderError } from "../../core/errors.js";
import { sleep as defaultSleep } from "../../core/http.js";
import type { CallOptions, UploadedFile, UploadRequest } from "../spec.js";
import type { TogetherClient } from "./client.js";
import { PROVIDER } from "./job.js";
import { fileSchema, type TogetherFile, toDate } from "./schemas.js";

const DONE = "COMPLETED";
const REJECTED = new Set(["FAILED", "INVALID_FORMAT"]);

export async function uploadFile(
  client: TogetherClient,
  upload: UploadRequest,
  options: CallOptions,
  pollInterval: number,
): Promise<UploadedFile> {
  const signal = options.signal;
  const fields = { file_name: upload.filename, file_type: "jsonl", purpose: "fine-tune" };
  const started = await client.send("/files", {
    method: "POST",
    query: fields,
    body: new URLSearchParams(fields).toString(),
    redirect: "manual",
    expectStatus: (status) => status === 302,
    ...(signal ? { signal } : {}),
  });
  void started.body?.cancel().catch(() => {});
  const location = started.headers.get("location");
  const fileId = started.headers.get("x-together-file-id");
  if (!location || !fileId) {
    throw new ProviderError(
      "invalid_response",
      "the upload answer lacks its Location or X-Together-File-Id header",
      {
        provider: PROVIDER,
        status: started.status,
      },
    );
  }

  const stored = await client.sendElsewhere(new URL(location, client.baseURL).href, {
    method: "PUT",
    headers: { "Content-Type": "application/octet-stream" },
    body: upload.data,
    ...(signal ? { signal } : {}),
  });
  void stored.body?.cancel().catch(() => {});

  const call = signal ? { signal } : {};
  let file = await client.call("POST", `/files/${encodeURIComponent(fileId)}/preprocess`, {
    schema: fileSchema,
    ...call,
  });
  if (upload.waitForProcessing !== false) {
    const wait = client.sleep ?? defaultSleep;
    while (!isSettled(file)) {
      await wait(pollInterval, signal);
      file = await client.call("GET", `/files/${encodeURIComponent(fileId)}`, {
        schema: fileSchema,
        ...call,
      });
    }
    const rejected = rejectionOf(file);
    if (rejected !== undefined) {
      const message = client.redact(`Together rejected ${upload.filename} (file ${file.id}): ${rejected}`);
      throw new ProviderError("file_rejected", message, {
        provider: PROVIDER,
        cause: file.validation_report,
      });
    }
  }
  return toUploadedFile(file, upload);
}

/** Processing has ended, one way or the other. Files from before the pipeline have no status. */
function isSettled(file: TogetherFile): boolean {
  const status = file.processing_status?.toUpperCase();
  if (status === undefined) return true;
  return status === DONE || REJECTED.has(status) || file.validation_report?.valid === false;
}

function rejectionOf(file: TogetherFile): string | undefined {
  const status = file.processing_status?.toUpperCase();
  const report = file.validation_report;
  if (!(status !== undefined && REJECTED.has(status)) && report?.valid !== false) return undefined;
  return report?.error ?? report?.error_type ?? status ?? "the file did not pass validation";
}

function toUploadedFile(file: TogetherFile, upload: UploadRequest): UploadedFile {
  const status = file.processing_status?.toUpperCase();
  const rawStatus = file.processing_status ?? (file.Processed ? "processed" : "uploaded");
  return {
    id: file.id,
    filename: file.filename ?? upload.filename,
    bytes: file.bytes ?? upload.data.byteLength,
    status:
      rejectionOf(file) !== undefined
        ? "error"
        : status === DONE || (status === undefined && file.Processed !== false)
          ? "processed"
          : "uploaded",
    rawStatus,
    createdAt: toDate(file.created_at) ?? new Date(),
  };
}
