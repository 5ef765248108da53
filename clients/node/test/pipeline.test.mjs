// Drives a running suite from Node.js. It needs the variables `stepforge up`
// writes (STEPFORGE_ENVIRONMENT_URL, STEPFORGE_SDK_TOKEN, STEPFORGE_CA_CERT)
// and two pipelines made beforehand from tests/support/step_code.py:
//   STEPFORGE_NODE_TEST_STEP, STEPFORGE_NODE_TEST_PIPELINE: `echo`, with the
//     string input `text` and the string output `echoed`;
//   STEPFORGE_NODE_TEST_FILE_PIPELINE: `seed_example`, with the inputs
//     `input1` (string), `input2` (file), `input3` (number) and the file
//     output `prediction`.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import * as grpc from "@grpc/grpc-js";

import {
  CHUNK_BYTES,
  connect,
  jsonOutput,
  loadStepforgePackage,
  optionsFromEnvironment,
  readFileOutput,
  readLogs,
  runPipeline,
  unary,
  waitForExecution,
} from "../stepforge.mjs";

const STEP = requiredVariable("STEPFORGE_NODE_TEST_STEP");
const PIPELINE = requiredVariable("STEPFORGE_NODE_TEST_PIPELINE");
const FILE_PIPELINE = requiredVariable("STEPFORGE_NODE_TEST_FILE_PIPELINE");
const RUN_TIMEOUT_S = 120;

describe("the suite called from Node.js through the protos alone", () => {
  const stepforge = loadStepforgePackage();
  let clients;

  before(() => {
    clients = connect({ ...optionsFromEnvironment(), stepforge });
  });

  after(() => clients?.close());

  test("lists the steps and finds the built step", async () => {
    const steps = await listAll(clients.registry, "ListSteps", "steps");
    const step = steps.find((candidate) => candidate.name === `steps/${STEP}`);
    assert.ok(step, `steps/${STEP} not in ${steps.map((s) => s.name).join(", ")}`);
    assert.equal(step.status, "STEP_STATUS_READY");
    assert.equal(step.functionName, "echo");
    assert.deepEqual(
      step.inputs.map((input) => [input.name, input.dataType]),
      [["text", "DATA_TYPE_STRING"]],
    );
  });

  test("gets the pipeline and the step it wraps", async () => {
    const pipeline = await unary(clients.registry, "GetPipeline", {
      name: `pipelines/${PIPELINE}`,
    });
    assert.equal(pipeline.step, `steps/${STEP}`);
  });

  test("runs the pipeline and reads the printed line and the JSON output", async () => {
    const text = `from node ${randomUUID()}`;
    const started = await runPipeline(clients.execution, {
      pipeline: `pipelines/${PIPELINE}`,
      jsonInputs: { text },
    });
    assert.match(started.name, /^executions\/.+/);
    assert.equal(started.pipeline, `pipelines/${PIPELINE}`);

    const ended = await waitForExecution(clients.execution, started.name, {
      timeoutS: RUN_TIMEOUT_S,
    });
    assert.equal(ended.status, "EXECUTION_STATUS_SUCCEEDED", ended.failureReason);
    assert.equal(jsonOutput(ended, "echoed"), text);

    const lines = await readLogs(clients.execution, started.name);
    const printed = lines.filter((line) => line.stream === "LOG_STREAM_STDOUT");
    assert.ok(
      printed.some((line) => line.text === `echo says ${text}`),
      `no "echo says ${text}" among: ${JSON.stringify(printed.map((l) => l.text))}`,
    );

    const fetched = await unary(clients.execution, "GetExecution", {
      name: started.name,
    });
    assert.equal(jsonOutput(fetched, "echoed"), text);
  });

  test("streams a file input in chunks and reads the file output back", async () => {
    // Over one chunk, so the input arrives as several FileChunk messages.
    const content = Buffer.from("stepforge from node\n".repeat(CHUNK_BYTES / 10));
    assert.ok(content.length > CHUNK_BYTES);
    const started = await runPipeline(clients.execution, {
      pipeline: `pipelines/${FILE_PIPELINE}`,
      jsonInputs: { input1: "abc", input3: 3 },
      files: { input2: content },
    });

    const ended = await waitForExecution(clients.execution, started.name, {
      timeoutS: RUN_TIMEOUT_S,
    });
    assert.equal(ended.status, "EXECUTION_STATUS_SUCCEEDED", ended.failureReason);
    assert.equal(ended.inputs.input2.kind, "file");
    assert.equal(ended.inputs.input2.file.sizeBytes, String(content.length));

    const lines = await readLogs(clients.execution, started.name);
    const expected = `input1 abc bytes ${content.length} input3 3`;
    assert.ok(
      lines.some((line) => line.text === expected),
      `no "${expected}" among: ${JSON.stringify(lines.map((l) => l.text))}`,
    );
    const output = await readFileOutput(clients.execution, started.name, "prediction");
    assert.ok(output.equals(Buffer.from(content.toString().toUpperCase())));
  });

  test("a wrong bearer token is refused as UNAUTHENTICATED", async () => {
    const stranger = connect({
      ...optionsFromEnvironment(),
      token: "sf_not-a-token",
      stepforge,
    });
    try {
      await assert.rejects(
        unary(stranger.registry, "ListSteps", {}),
        (error) => error.code === grpc.status.UNAUTHENTICATED,
      );
    } finally {
      stranger.close();
    }
  });
});

async function listAll(client, method, field) {
  const items = [];
  let pageToken = "";
  do {
    const page = await unary(client, method, { pageToken });
    items.push(...page[field]);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return items;
}

function requiredVariable(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name}: must be set; tests/clients/node runs this test`);
  }
  return value;
}
