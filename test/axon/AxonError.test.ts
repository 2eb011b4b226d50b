import { assert, describe, it } from "@effect/vitest"
import {
  AxonError,
  type AxonOperation,
  classify,
  isRegistrationLost,
  isRetryable,
  readErrorBody
} from "../../src/axon/AxonError.js"

const ours = (code: string, message: string) => JSON.stringify({ error: { code, message } })
const theirs = (message: string) => JSON.stringify({ error: message })

describe("AxonError classification", () => {
  it("reads both error-body shapes, and neither from a body that is not one", () => {
    assert.deepStrictEqual(readErrorBody(409, ours("ALREADY_REGISTERED", "NPI taken")), {
      status: 409,
      code: "ALREADY_REGISTERED",
      message: "NPI taken"
    })
    assert.deepStrictEqual(readErrorBody(404, theirs("Not found")), {
      status: 404,
      code: undefined,
      message: "Not found"
    })
    assert.deepStrictEqual(readErrorBody(502, "<html>Bad gateway</html>"), {
      status: 502,
      code: undefined,
      message: undefined
    })
    assert.deepStrictEqual(readErrorBody(400, "[1,2]"), { status: 400, code: undefined, message: undefined })
  })

  it("keeps a registry's message printable and short", () => {
    const answer = readErrorBody(400, theirs("line one\nline two\u0000" + "x".repeat(1000)))
    assert.notInclude(answer.message!, "\n")
    assert.notInclude(answer.message!, "\u0000")
    assert.isAtMost(answer.message!.length, 301)
  })

  const table: ReadonlyArray<[AxonOperation, number, string, string]> = [
    // A conflict on registration: our 409, the public Axon's 400 with its text.
    ["register", 409, ours("ALREADY_REGISTERED", "already registered"), "conflict"],
    ["register", 400, theirs(`NPI "1234567893" is already registered`), "conflict"],
    ["register", 400, ours("INVALID_REQUEST", "organization_npi: must be a valid NPI"), "rejected"],
    ["register", 401, ours("UNAUTHORIZED", "enrollment token required"), "unauthorized"],
    // Provider add: "already registered" is a success.
    ["provider_add", 400, theirs(`NPI "1234567802" is already registered`), "already_registered"],
    ["provider_add", 409, ours("ALREADY_REGISTERED", "x"), "already_registered"],
    ["provider_add", 400, theirs(`Invalid provider type: "wizard" is not in the taxonomy`), "rejected"],
    // The registration is lost: 401/404 on a heartbeat or a provider write.
    ["heartbeat", 401, theirs("Unauthorized"), "unauthorized"],
    ["heartbeat", 404, ours("NOT_REGISTERED", "deregistered"), "not_registered"],
    ["provider_add", 404, theirs("Neuron not found"), "not_registered"],
    ["provider_remove", 404, ours("NOT_REGISTERED", "gone"), "not_registered"],
    // A 404 on a read is "not supported", never "registration lost".
    ["provider_list", 404, theirs("Not found"), "not_supported"],
    ["provider_list", 404, ours("NOT_REGISTERED", "gone"), "not_supported"],
    ["deregister", 404, theirs("Not found"), "not_supported"],
    ["deregister", 404, ours("NOT_REGISTERED", "gone"), "not_registered"],
    ["heartbeat", 403, ours("FORBIDDEN", "another neuron's token"), "rejected"],
    ["heartbeat", 500, ours("SERVER_ERROR", "oops"), "server_error"],
    ["register", 503, "", "server_error"],
    ["heartbeat", 409, ours("ALREADY_REGISTERED", "?"), "rejected"]
  ]
  for (const [operation, status, body, expected] of table) {
    it(`${operation} answered ${status} ${body.slice(0, 40)} is ${expected}`, () => {
      assert.strictEqual(classify(operation, readErrorBody(status, body)), expected)
    })
  }

  it("isRegistrationLost only for 401/404 on a heartbeat or provider write; isRetryable only for no answer or 5xx", () => {
    const e = (reason: AxonError["reason"], operation: AxonOperation) =>
      new AxonError({ reason, operation, message: "m" })
    assert.isTrue(isRegistrationLost(e("unauthorized", "heartbeat")))
    assert.isTrue(isRegistrationLost(e("not_registered", "provider_add")))
    assert.isTrue(isRegistrationLost(e("not_registered", "provider_remove")))
    assert.isFalse(isRegistrationLost(e("unauthorized", "register")))
    assert.isFalse(isRegistrationLost(e("not_supported", "provider_list")))
    assert.isFalse(isRegistrationLost(e("conflict", "register")))
    assert.isTrue(isRetryable(e("unreachable", "heartbeat")))
    assert.isTrue(isRetryable(e("timeout", "heartbeat")))
    assert.isTrue(isRetryable(e("server_error", "register")))
    for (const reason of ["unauthorized", "not_registered", "conflict", "rejected", "undecodable", "not_supported"]) {
      assert.isFalse(isRetryable(e(reason as AxonError["reason"], "heartbeat")), reason)
    }
  })
})
