// Calls the Stepforge suite from Node.js with nothing but the .proto files:
// proto-loader reads protos/ at run time, so no generated code is kept here.
import { once } from "node:events";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const PROTO_ROOT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "protos",
);
export const PROTO_FILES = [
  "stepforge/v1/registry.proto",
  "stepforge/v1/build.proto",
  "stepforge/v1/execution.proto",
];
// Files move in chunks of at most 1 MiB, as every Stepforge stream does.
export const CHUNK_BYTES = 1024 * 1024;
export const ENDED_STATUSES = new Set([
  "EXECUTION_STATUS_SUCCEEDED",
  "EXECUTION_STATUS_FAILED",
  "EXECUTION_STATUS_CANCELLED",
]);

const PLAINTEXT_SCHEMES = ["grpc://", "http://"];
const TLS_SCHEMES = ["grpcs://", "https://"];
// Room for one chunk and its envelope, as the Python SDK allows.
const MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES;
// The server caps one WaitExecution at 60 seconds.
const WAIT_SLICE_S = 30;
const CALL_TIMEOUT_MS = 30_000;

/**
 * The `stepforge.v1` package loaded from the protos: message fields in
 * lowerCamelCase, enums as their names, int64 as strings, and each oneof's
 * set field named by a property of the oneof's name.
 */
export function loadStepforgePackage(protoRoot = PROTO_ROOT) {
  const definition = protoLoader.loadSync(PROTO_FILES, {
    includeDirs: [protoRoot],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).stepforge.v1;
}

/**
 * The options `connect` takes, from the variables `stepforge up` writes to
 * `<data-dir>/env`.
 */
export function optionsFromEnvironment(env = process.env) {
  const missing = ["STEPFORGE_ENVIRONMENT_URL", "STEPFORGE_SDK_TOKEN"].filter(
    (name) => !env[name],
  );
  if (missing.length > 0) {
    throw new Error(`${missing.join(" and ")}: must be set`);
  }
  return {
    environmentUrl: env.STEPFORGE_ENVIRONMENT_URL,
    token: env.STEPFORGE_SDK_TOKEN,
    caCert: env.STEPFORGE_CA_CERT || undefined,
    clientCert: env.STEPFORGE_CLIENT_CERT || undefined,
    clientKey: env.STEPFORGE_CLIENT_KEY || undefined,
  };
}

/**
 * Clients of the three public services over one channel, each call carrying
 * `authorization: Bearer <token>`. `environmentUrl` is `host:port` or
 * `grpc://host:port` in plaintext, `grpcs://host:port` over TLS trusting the
 * PEM file `caCert` (else the system's roots).
 */
export function connect({
  environmentUrl,
  token,
  caCert,
  clientCert,
  clientKey,
  stepforge = loadStepforgePackage(),
}) {
  if (!token) {
    throw new Error("token: must be set; every call needs a bearer token");
  }
  const { target, secure } = parseEnvironmentUrl(environmentUrl);
  const credentials = channelCredentials(secure, { caCert, clientCert, clientKey });
  const channel = new grpc.Channel(target, credentials, {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
  // An interceptor rather than call credentials: grpc-js refuses call
  // credentials on a plaintext channel, and the token must go on both.
  const options = { channelOverride: channel, interceptors: [bearer(token)] };
  const client = (Service) => new Service(target, credentials, options);
  return {
    registry: client(stepforge.RegistryService),
    build: client(stepforge.BuildService),
    execution: client(stepforge.ExecutionService),
    close: () => channel.close(),
  };
}

/** `{ target, secure }` of an environment URL, or an error naming the rule. */
export function parseEnvironmentUrl(url) {
  if (typeof url !== "string" || url === "") {
    throw new Error("environmentUrl: must be set");
  }
  const secure = TLS_SCHEMES.some((scheme) => url.startsWith(scheme));
  const scheme = [...PLAINTEXT_SCHEMES, ...TLS_SCHEMES].find((s) => url.startsWith(s));
  const target = (scheme ? url.slice(scheme.length) : url).replace(/\/+$/, "");
  const colon = target.lastIndexOf(":");
  const port = target.slice(colon + 1);
  if (colon <= 0 || !/^\d+$/.test(port) || target.includes("/")) {
    throw new Error(
      "environmentUrl: must be host:port, grpc://host:port or grpcs://host:port",
    );
  }
  return { target, secure };
}

/** Calls a unary RPC, such as `unary(registry, "GetStep", { name })`. */
export function unary(client, method, request, { timeoutMs = CALL_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline(timeoutMs) }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** Every message of a server-streaming RPC, in order. */
export async function collect(stream) {
  const messages = [];
  for await (const message of stream) {
    messages.push(message);
  }
  return messages;
}

/**
 * Starts a run and returns the pending execution. RunPipeline is
 * client-streaming: the header goes first, then each file input's chunks in
 * the order `header.fileInputs` names them. `jsonInputs` holds plain values,
 * sent as JSON text; `files` holds Buffers by input name.
 */
export async function runPipeline(
  execution,
  { pipeline, jsonInputs = {}, files = {}, timeoutS },
  { timeoutMs = CALL_TIMEOUT_MS } = {},
) {
  const encoded = Object.fromEntries(
    Object.entries(jsonInputs).map(([name, value]) => [name, JSON.stringify(value)]),
  );
  const fileInputs = Object.keys(files);
  const header = { pipeline, jsonInputs: encoded, fileInputs };
  if (timeoutS !== undefined) {
    header.timeout = { seconds: timeoutS };
  }
  let call;
  const response = new Promise((resolve, reject) => {
    call = execution.RunPipeline({ deadline: deadline(timeoutMs) }, (error, answer) =>
      error ? reject(error) : resolve(answer),
    );
  });
  // Handled here too, so a refusal that comes while chunks are still being
  // written is not an unhandled rejection; the caller still gets it below.
  response.catch(() => {});
  // Waiting for "drain" keeps memory flat however large a file is; the race
  // stops the wait when the server answers, or fails, first.
  const send = async (message) => {
    if (!call.write(message)) {
      await Promise.race([once(call, "drain"), response]);
    }
  };
  await send({ header });
  for (const name of fileInputs) {
    const content = files[name];
    for (let start = 0; start < content.length; start += CHUNK_BYTES) {
      const data = content.subarray(start, start + CHUNK_BYTES);
      await send({ fileChunk: { inputName: name, data } });
    }
  }
  call.end();
  return response;
}

/** The execution once it has ended, asking WaitExecution until it has. */
export async function waitForExecution(execution, name, { timeoutS = 300 } = {}) {
  const until = Date.now() + timeoutS * 1000;
  for (;;) {
    const left = Math.ceil((until - Date.now()) / 1000);
    const slice = Math.max(0, Math.min(WAIT_SLICE_S, left));
    const current = await unary(
      execution,
      "WaitExecution",
      { name, timeout: { seconds: slice } },
      { timeoutMs: (slice + 30) * 1000 },
    );
    if (ENDED_STATUSES.has(current.status)) {
      return current;
    }
    if (left <= 0) {
      throw new Error(`${name} has not ended after ${timeoutS} s: ${current.status}`);
    }
  }
}

/** Every log line of an execution; with `follow`, until it ends. */
export function readLogs(execution, name, { follow = false } = {}) {
  return collect(execution.ReadExecutionLogs({ name, follow }));
}

/** The content of a FILE output, as one Buffer. */
export async function readFileOutput(execution, name, outputName) {
  const pieces = await collect(execution.ReadExecutionOutput({ name, outputName }));
  return Buffer.concat(pieces.map((piece) => piece.data));
}

/** The value of a JSON output of an execution that succeeded. */
export function jsonOutput(execution, outputName) {
  const value = execution.outputs[outputName];
  if (value === undefined || value.kind !== "json") {
    throw new Error(`${outputName}: not a JSON output of ${execution.name}`);
  }
  return JSON.parse(value.json);
}

function channelCredentials(secure, files) {
  if (!secure) {
    const given = Object.keys(files).filter((name) => files[name]);
    if (given.length > 0) {
      throw new Error(
        `${given[0]}: applies to grpcs:// URLs only; the URL is plaintext`,
      );
    }
    return grpc.credentials.createInsecure();
  }
  if (Boolean(files.clientCert) !== Boolean(files.clientKey)) {
    throw new Error("clientCert: and clientKey go together");
  }
  const read = (field) => {
    if (!files[field]) {
      return null;
    }
    try {
      return readFileSync(files[field]);
    } catch (error) {
      throw new Error(`${field}: cannot read ${files[field]}: ${error.message}`);
    }
  };
  return grpc.credentials.createSsl(
    read("caCert"),
    read("clientKey"),
    read("clientCert"),
  );
}

function bearer(token) {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

function deadline(timeoutMs) {
  return new Date(Date.now() + timeoutMs);
}
