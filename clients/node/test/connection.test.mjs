// What the client module checks before any call: no server is needed.
import assert from "node:assert/strict";
import { test } from "node:test";

import { connect, optionsFromEnvironment, parseEnvironmentUrl } from "../stepforge.mjs";

test("host:port and grpc:// URLs are plaintext, grpcs:// is TLS", () => {
  assert.deepEqual(parseEnvironmentUrl("127.0.0.1:50051"), {
    target: "127.0.0.1:50051",
    secure: false,
  });
  assert.deepEqual(parseEnvironmentUrl("grpc://suite.example:8080/"), {
    target: "suite.example:8080",
    secure: false,
  });
  assert.deepEqual(parseEnvironmentUrl("grpcs://127.0.0.1:50051"), {
    target: "127.0.0.1:50051",
    secure: true,
  });
});

test("a URL without a numeric port or with a path is refused, naming the field", () => {
  for (const url of ["suite.example", "grpcs://suite.example:http", "h:1/path", ""]) {
    assert.throws(() => parseEnvironmentUrl(url), /^Error: environmentUrl: must/);
  }
});

test("a CA file with a plaintext URL is refused, naming the field", () => {
  assert.throws(
    () =>
      connect({ environmentUrl: "grpc://127.0.0.1:1", token: "t", caCert: "ca.pem" }),
    /caCert: applies to grpcs:\/\/ URLs only/,
  );
});

test("an unreadable CA file is refused, naming the field and the path", () => {
  assert.throws(
    () =>
      connect({
        environmentUrl: "grpcs://127.0.0.1:1",
        token: "t",
        caCert: "/nonexistent/ca.pem",
      }),
    /caCert: cannot read \/nonexistent\/ca\.pem/,
  );
});

test("a client certificate without its key is refused, naming the field", () => {
  assert.throws(
    () =>
      connect({
        environmentUrl: "grpcs://127.0.0.1:1",
        token: "t",
        clientCert: "user.pem",
      }),
    /^Error: clientCert: and clientKey go together/,
  );
});

test("a connection without a token is refused, naming the field", () => {
  assert.throws(
    () => connect({ environmentUrl: "127.0.0.1:1", token: "" }),
    /^Error: token: must be set/,
  );
});

test("the environment's variables become connect's options", () => {
  const options = optionsFromEnvironment({
    STEPFORGE_ENVIRONMENT_URL: "grpcs://127.0.0.1:50051",
    STEPFORGE_SDK_TOKEN: "sf_token",
    STEPFORGE_CA_CERT: "/data/tls/ca.pem",
  });
  assert.equal(options.environmentUrl, "grpcs://127.0.0.1:50051");
  assert.equal(options.token, "sf_token");
  assert.equal(options.caCert, "/data/tls/ca.pem");
  assert.equal(options.clientCert, undefined);
  assert.throws(
    () => optionsFromEnvironment({ STEPFORGE_SDK_TOKEN: "sf_token" }),
    /STEPFORGE_ENVIRONMENT_URL: must be set/,
  );
});
