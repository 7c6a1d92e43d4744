/**
 * Uploading training data as a Fireworks dataset, as its Python SDK does (python-sdk
 * src/fireworks/resources/datasets.py and src/fireworks/lib/dataset_upload.py):
 * 1. `POST /v1/accounts/{account}/datasets` with `datasetId` and `dataset: { userUploaded: {},
 *    exampleCount, displayName }`.
 * 2. Up to 150 MB (the limit of one request): `POST …/datasets/{id}:upload`, the file as multipart
 *    form data. Larger: `POST …:getUploadEndpoint` with `filenameToSize`, a `PUT` of the bytes to the
 *    signed URL it answers (without Fireworks' key; `Content-Type` and `X-Goog-Content-Length-Range`
 *    are part of the signature), then `POST …:validateUpload`.
 * 3. `GET …/datasets/{id}` until its `state` is READY; an error `status` is a rejection.
 */
import { randomBytes } from "node:crypto";
import { ProviderError } from "../../core/errors.js";
import { sleep as defaultSleep } from "../../core/http.js";
import type { ApiClient } from "../api-client.js";
import type { CallOptions, UploadedFile, UploadRequest } from "../spec.js";
import { PROVIDER } from "./job.js";
import { anySchema, datasetSchema, type FireworksDataset, signedUrlsSchema, toDate } from "./schemas.js";

/** What one `:upload` request may carry (python-sdk dataset_upload.py: "limited to 150 MB per request"). */
export const DIRECT_UPLOAD_LIMIT = 150 * 1024 * 1024;

export interface UploadSettings {
  account: string;
  pollInterval: number;
  directUploadLimit: number;
}

export async function uploadDataset(
  client: ApiClient,
  upload: UploadRequest,
  options: CallOptions,
  settings: UploadSettings,
): Promise<UploadedFile> {
  const signal = options.signal;
  const call = signal ? { signal } : {};
  const id = datasetId(upload.filename);
  const path = `/accounts/${encodeURIComponent(settings.account)}/datasets`;
  const here = `${path}/${id}`;
  let dataset = await client.call("POST", path, {
    schema: datasetSchema,
    json: {
      datasetId: id,
      dataset: {
        displayName: upload.filename,
        exampleCount: String(lineCount(upload.data)),
        userUploaded: {},
      },
    },
    ...call,
  });
  // Fireworks' training reads shards named `*.jsonl`, in lowercase (python-sdk dataset_upload.py).
  const given = upload.filename.split(/[\\/]/).at(-1) ?? "";
  const filename = /^[^"\r\n]+\.jsonl$/.test(given) ? given : `${id}.jsonl`;
  if (upload.data.byteLength <= settings.directUploadLimit) {
    const boundary = `tunekit-${randomBytes(12).toString("hex")}`;
    const answer = await client.send(`${here}:upload`, {
      method: "POST",
      body: multipart(boundary, filename, upload.data),
      contentType: `multipart/form-data; boundary=${boundary}`,
      ...call,
    });
    void answer.body?.cancel().catch(() => {});
  } else {
    const size = String(upload.data.byteLength);
    const { filenameToSignedUrls } = await client.call("POST", `${here}:getUploadEndpoint`, {
      schema: signedUrlsSchema,
      json: { filenameToSize: { [filename]: size } },
      ...call,
    });
    const url = filenameToSignedUrls?.[filename];
    if (!url?.startsWith("https://"))
      throw new ProviderError("invalid_response", `the upload endpoint gave no https URL for ${filename}`, {
        provider: PROVIDER,
      });
    const stored = await client.sendElsewhere(url, {
      method: "PUT",
      headers: {
        "Content-Type": "application/octet-stream",
        "X-Goog-Content-Length-Range": `${size},${size}`,
      },
      body: upload.data,
      ...call,
    });
    void stored.body?.cancel().catch(() => {});
    await client.call("POST", `${here}:validateUpload`, { schema: anySchema, json: {}, ...call });
  }
  if (upload.waitForProcessing !== false) {
    const wait = client.sleep ?? defaultSleep;
    dataset = await client.call("GET", here, { schema: datasetSchema, ...call });
    while (dataset.state !== "READY" && rejectionOf(dataset) === undefined) {
      await wait(settings.pollInterval, signal);
      dataset = await client.call("GET", here, { schema: datasetSchema, ...call });
    }
    const rejected = rejectionOf(dataset);
    if (rejected !== undefined)
      throw new ProviderError(
        "file_rejected",
        client.redact(`Fireworks rejected ${upload.filename} (dataset ${id}): ${rejected}`),
        { provider: PROVIDER, cause: dataset.status },
      );
  }
  return {
    id,
    filename: upload.filename,
    bytes: upload.data.byteLength,
    status: dataset.state === "READY" ? "processed" : "uploaded",
    rawStatus: dataset.state ?? "",
    createdAt: toDate(dataset.createTime) ?? new Date(),
  };
}

/** `train.jsonl` → `train-1a2b3c4d`: a dataset id is lowercase letters, digits and dashes, at most 63. */
export function datasetId(filename: string): string {
  const stem = filename
    .replace(/\.[^.]*$/, "")
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  return `${stem || "dataset"}-${randomBytes(4).toString("hex")}`;
}

function rejectionOf(dataset: FireworksDataset): string | undefined {
  const code = dataset.status?.code;
  if (code === undefined || code === null || code === "OK" || code === 0) return undefined;
  return dataset.status?.message || String(code);
}

function lineCount(data: Uint8Array): number {
  let lines = 0;
  let content = false;
  for (const byte of data) {
    if (byte === 0x0a) {
      if (content) lines++;
      content = false;
    } else if (byte !== 0x0d && byte !== 0x20 && byte !== 0x09) content = true;
  }
  return lines + (content ? 1 : 0);
}

/** One file as `multipart/form-data` under the field `file`. */
function multipart(boundary: string, filename: string, data: Uint8Array): Uint8Array {
  const safe = filename.replace(/["\r\n\\]/g, "_");
  const head = new TextEncoder().encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${safe}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = new TextEncoder().encode(`\r\n--${boundary}--\r\n`);
  const body = new Uint8Array(head.length + data.length + tail.length);
  body.set(head, 0);
  body.set(data, head.length);
  body.set(tail, head.length + data.length);
  return body;
}
