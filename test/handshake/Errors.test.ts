import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { makePatientKey, patientKeyFromSeed, signNonce } from "../../src/careagent/CareAgentKeys.js"
import { ProviderLookup } from "../../src/handshake/ProviderLookup.js"
import { captureLogs } from "../store/helpers.js"
import { connect, opened, type RawClient } from "../support/ws.js"
import {
  adjustWhenArmed,
  authMessage,
  eventually,
  handshakeWith,
  NOW,
  ORG,
  PATIENT,
  PROVIDER,
  startNeuron,
  type TestNeuron,
  UNKNOWN_PROVIDER
} from "./fixture.js"

/** Reads `handshake.error` and the close that follows; checks the code pair of the table. */
const expectError = (client: RawClient, code: string, closeCode: number) =>
  Effect.gen(function*() {
    const message = yield* client.message
    assert.strictEqual(message.type, "handshake.error", JSON.stringify(message))
    assert.strictEqual(message.code, code, message.message)
    const closed = yield* client.closed
    assert.strictEqual(closed.code, closeCode)
    return message.message as string
  })

/** Opens a raw client and waits for the upgrade. */
const open = (neuron: TestNeuron) => Effect.tap(connect(neuron.url), opened)

/** Sends a valid auth and returns the challenge. */
const toChallenge = (client: RawClient, key = patientKeyFromSeed(new Uint8Array(32).fill(1))) =>
  Effect.gen(function*() {
    yield* client.sendJson(yield* authMessage(key))
    const challenge = yield* client.message
    assert.strictEqual(challenge.type, "handshake.challenge")
    return challenge as { nonce: string; provider_npi: string; organization_npi: string; expires_at: string }
  })

const setup = (options?: Parameters<typeof startNeuron>[0]) =>
  Effect.zipRight(TestClock.setTime(NOW), startNeuron(options))

describe("handshake errors (PROTOCOL.md section 2 table)", () => {
  it.scoped("the challenge names the provider and organization, a fresh 64-hex nonce and expires_at", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const challenge = yield* toChallenge(yield* open(neuron))
      assert.match(challenge.nonce, /^[0-9a-f]{64}$/)
      assert.strictEqual(challenge.provider_npi, PROVIDER)
      assert.strictEqual(challenge.organization_npi, ORG)
      assert.strictEqual(challenge.expires_at, "2026-11-22T10:30:10.000Z")
    }))

  it.scoped("AUTH_TIMEOUT 4001: no handshake.auth within the auth timeout", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const client = yield* open(neuron)
      yield* adjustWhenArmed("10 seconds")
      const message = yield* expectError(client, "AUTH_TIMEOUT", 4001)
      assert.include(message, "handshake.auth")
      const failed = (yield* neuron.audit.list({ action: "handshake.failed" }))[0]!
      assert.strictEqual(failed.details.code, "AUTH_TIMEOUT")
      assert.strictEqual(failed.details.close_code, 4001)
    }))

  it.scoped("AUTH_TIMEOUT 4001: an expired challenge (no challenge_response before expires_at)", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const client = yield* open(neuron)
      yield* toChallenge(client)
      yield* adjustWhenArmed("10 seconds")
      const message = yield* expectError(client, "AUTH_TIMEOUT", 4001)
      assert.include(message, "expires_at")
    }))

  it.scoped("INVALID_MESSAGE 4002: a binary frame", () =>
    Effect.gen(function*() {
      const client = yield* open(yield* setup())
      yield* client.send(Buffer.from(JSON.stringify({ type: "handshake.auth" })), { binary: true })
      assert.include(yield* expectError(client, "INVALID_MESSAGE", 4002), "binary")
    }))

  it.scoped("INVALID_MESSAGE 4002: invalid JSON, and JSON that is not an object", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      for (const [frame, words] of [["{not json", "not valid JSON"], ["[1,2]", "one JSON object"], ["42", "object"]]) {
        const client = yield* open(neuron)
        yield* client.send(frame!)
        assert.include(yield* expectError(client, "INVALID_MESSAGE", 4002), words!)
      }
    }))

  it.scoped("INVALID_MESSAGE 4002: a wrong type, a missing field, a malformed field (named)", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = yield* makePatientKey
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ type: "handshake.challenge_response" }, `type: expected "handshake.auth"`],
        [{ type: undefined }, "type: is required"],
        [{ patient_endpoint: undefined }, "patient_endpoint: is required"],
        [{ patient_agent_id: 7 }, "patient_agent_id"],
        [{ consent_token_payload: "%%%" }, "consent_token_payload"]
      ]
      for (const [override, words] of cases) {
        const client = yield* open(neuron)
        yield* client.sendJson(yield* authMessage(key, { message: override }))
        assert.include(yield* expectError(client, "INVALID_MESSAGE", 4002), words)
      }
    }))

  it.scoped("INVALID_MESSAGE 4002: a truncated, a padded and a non-base64url signature", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = yield* makePatientKey
      const good = (yield* authMessage(key)).consent_token_signature
      for (const signature of [good.slice(0, 85), good + "==", good.slice(0, 84) + "+/"]) {
        const client = yield* open(neuron)
        yield* client.sendJson(yield* authMessage(key, { message: { consent_token_signature: signature } }))
        assert.include(yield* expectError(client, "INVALID_MESSAGE", 4002), "consent_token_signature")
      }
    }))

  it.scoped("CONSENT_FAILED 4003: a small-order key (with a forged R = identity, S = 0 signature)", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const identity = Buffer.alloc(32)
      identity[0] = 1
      const forged = Buffer.alloc(64)
      identity.copy(forged)
      const client = yield* open(neuron)
      yield* client.sendJson(
        yield* authMessage(yield* makePatientKey, {
          message: {
            patient_public_key: identity.toString("base64url"),
            consent_token_signature: forged.toString("base64url")
          }
        })
      )
      assert.include(yield* expectError(client, "CONSENT_FAILED", 4003), "small-order")
    }))

  it.scoped("CONSENT_FAILED 4003: a token signed by another key, expired, another patient, another organization", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = yield* makePatientKey
      const other = yield* makePatientKey
      const signedByOther = yield* authMessage(other)
      const cases: Array<Effect.Effect<Record<string, unknown>>> = [
        authMessage(key, {
          message: {
            consent_token_payload: signedByOther.consent_token_payload,
            consent_token_signature: signedByOther.consent_token_signature
          }
        }),
        authMessage(key, { claims: { exp: Math.floor(NOW / 1000) - 1 } }),
        authMessage(key, { message: { patient_agent_id: "someone-else" } }),
        authMessage(key, { claims: { organization_npi: PROVIDER } })
      ]
      for (const auth of cases) {
        const client = yield* open(neuron)
        yield* client.sendJson(yield* auth)
        yield* expectError(client, "CONSENT_FAILED", 4003)
      }
      assert.strictEqual((yield* neuron.relationships.list()).length, 0)
    }))

  it.scoped("PROVIDER_NOT_FOUND 4004: a valid NPI that is not a provider of this neuron", () =>
    Effect.gen(function*() {
      const client = yield* open(yield* setup())
      yield* client.sendJson(yield* authMessage(yield* makePatientKey, { claims: { provider_npi: UNKNOWN_PROVIDER } }))
      assert.include(yield* expectError(client, "PROVIDER_NOT_FOUND", 4004), UNKNOWN_PROVIDER)
    }))

  it.scoped("CONSENT_FAILED 4003: a challenge signed over another nonce", () =>
    Effect.gen(function*() {
      const key = patientKeyFromSeed(new Uint8Array(32).fill(1))
      const client = yield* open(yield* setup())
      yield* toChallenge(client, key)
      yield* client.sendJson({ type: "handshake.challenge_response", signed_nonce: signNonce(key, "ab".repeat(32)) })
      yield* expectError(client, "CONSENT_FAILED", 4003)
    }))

  it.scoped("CONSENT_FAILED 4003: a replayed challenge response, and a nonce from another connection", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = patientKeyFromSeed(new Uint8Array(32).fill(1))
      // Connection A completes; its answer replayed on B is refused.
      const a = yield* open(neuron)
      const answerA = {
        type: "handshake.challenge_response",
        signed_nonce: signNonce(key, (yield* toChallenge(a, key)).nonce)
      }
      yield* a.sendJson(answerA)
      assert.strictEqual((yield* a.message).type, "handshake.complete")
      const b = yield* open(neuron)
      yield* toChallenge(b, key)
      yield* b.sendJson(answerA)
      yield* expectError(b, "CONSENT_FAILED", 4003)
      // C answers with D's nonce: refused; D still completes with its own.
      const c = yield* open(neuron)
      const d = yield* open(neuron)
      yield* toChallenge(c, key)
      const nonceD = (yield* toChallenge(d, key)).nonce
      yield* c.sendJson({ type: "handshake.challenge_response", signed_nonce: signNonce(key, nonceD) })
      yield* expectError(c, "CONSENT_FAILED", 4003)
      yield* d.sendJson({ type: "handshake.challenge_response", signed_nonce: signNonce(key, nonceD) })
      const complete = yield* d.message
      assert.strictEqual(complete.type, "handshake.complete")
      assert.strictEqual(complete.status, "existing")
    }))

  it.scoped("INVALID_MESSAGE 4002: a second auth where the challenge response belongs", () =>
    Effect.gen(function*() {
      const key = yield* makePatientKey
      const client = yield* open(yield* setup())
      const auth = yield* authMessage(key)
      yield* client.sendJson(auth)
      yield* client.sendJson(auth)
      assert.strictEqual((yield* client.message).type, "handshake.challenge")
      assert.include(yield* expectError(client, "INVALID_MESSAGE", 4002), "handshake.challenge_response")
    }))

  it.scoped("INVALID_MESSAGE 4002: a third message (a frame after the last expected one), no relationship", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = patientKeyFromSeed(new Uint8Array(32).fill(1))
      const client = yield* open(neuron)
      const challenge = yield* toChallenge(client, key)
      // Both frames in one TCP write, so the server holds both when it reads the answer.
      const socket = (client.ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket
      socket.cork()
      client.ws.send(
        JSON.stringify({ type: "handshake.challenge_response", signed_nonce: signNonce(key, challenge.nonce) })
      )
      client.ws.send(JSON.stringify({ type: "handshake.challenge_response", signed_nonce: "x" }))
      socket.uncork()
      assert.include(yield* expectError(client, "INVALID_MESSAGE", 4002), "no frame is expected")
      assert.strictEqual((yield* neuron.relationships.list()).length, 0)
    }))

  it.scoped("SERVER_ERROR 1011: an unexpected failure, with a message that reveals nothing", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const broken = Layer.succeed(ProviderLookup, {
        find: () => Effect.die(new Error("SELECT * FROM providers: disk I/O error at /var/lib/neuron"))
      })
      const neuron = yield* startNeuron({}, broken)
      const client = yield* open(neuron)
      yield* client.sendJson(yield* authMessage(yield* makePatientKey))
      const message = yield* expectError(client, "SERVER_ERROR", 1011)
      assert.notInclude(message, "SELECT")
      assert.notInclude(message, "/var/lib")
      const error = yield* Effect.flip(handshakeWith(neuron, yield* makePatientKey))
      assert.strictEqual(error.code, "SERVER_ERROR")
      assert.strictEqual(error.closeCode, 1011)
    }))

  it.scoped("a provider lookup that needs a read (findNow has no answer) runs in a fiber; the handshake goes on from its answer: complete for a provider, PROVIDER_NOT_FOUND 4004 otherwise", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const reads: Array<string> = []
      const slow = Layer.succeed(ProviderLookup, {
        // A read that completes later, on Node's timers (not the TestClock): the handshake waits for it.
        find: (npi) =>
          Effect.as(
            Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5))),
            npi === PROVIDER ? Option.some({ provider_npi: npi, provider_endpoint_url: Option.none() }) : Option.none()
          ).pipe(Effect.tap(() => reads.push(npi))),
        findNow: () => undefined
      })
      const neuron = yield* startNeuron({}, slow)
      const done = yield* handshakeWith(neuron, yield* makePatientKey)
      assert.strictEqual(done.status, "new")
      assert.strictEqual(done.provider_npi, PROVIDER)
      const error = yield* Effect.flip(handshakeWith(neuron, yield* makePatientKey, { provider_npi: UNKNOWN_PROVIDER }))
      assert.strictEqual(error.code, "PROVIDER_NOT_FOUND")
      assert.strictEqual(error.closeCode, 4004)
      assert.deepStrictEqual(reads, [PROVIDER, UNKNOWN_PROVIDER])
    }))

  it.scoped("a step that throws (here the provider cache) ends that handshake as SERVER_ERROR 1011, recorded; the server stays up and serves the next", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      let broken = true
      const flaky = Layer.succeed(ProviderLookup, {
        find: (npi) => Effect.succeed(Option.some({ provider_npi: npi, provider_endpoint_url: Option.none() })),
        findNow: () => {
          if (broken) throw new Error("cache corrupted at /var/lib/neuron")
          return undefined
        }
      })
      const neuron = yield* startNeuron({}, flaky)
      const client = yield* open(neuron)
      yield* client.sendJson(yield* authMessage(yield* makePatientKey))
      assert.notInclude(yield* expectError(client, "SERVER_ERROR", 1011), "/var/lib")
      const entries = yield* eventually(
        neuron.audit.list(),
        (entries) => entries.some((e) => e.action === "handshake.failed"),
        "the handshake.failed entry"
      )
      assert.strictEqual(entries.find((e) => e.action === "handshake.failed")!.details.code, "SERVER_ERROR")
      broken = false
      assert.strictEqual((yield* handshakeWith(neuron, yield* makePatientKey)).status, "new")
    }))

  it.scoped("a refusal whose handshake.failed entry cannot be written (the audit log refuses inserts) is still answered; the failed write is logged without the entry's contents, the connection is let go, and the next handshake is served", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const neuron = yield* setup()
      yield* neuron.sql`CREATE TRIGGER audit_full BEFORE INSERT ON audit_log
        BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`
      const client = yield* open(neuron)
      yield* client.sendJson({ type: "handshake.hello" })
      yield* expectError(client, "INVALID_MESSAGE", 4002)
      yield* eventually(
        Effect.sync(() => logs.lines),
        (lines) => lines.some((l) => l.includes("could not write the handshake.failed audit entry")),
        "the log line of the unwritten entry"
      )
      const line = logs.lines.find((l) => l.includes("could not write the handshake.failed audit entry"))!
      assert.include(line, "level=ERROR")
      assert.notInclude(line, "handshake.hello")
      yield* neuron.sql`DROP TRIGGER audit_full`
      assert.strictEqual((yield* handshakeWith(neuron, yield* makePatientKey)).status, "new")
      const actions = (yield* neuron.audit.list()).map((e) => e.action)
      assert.deepStrictEqual(actions, ["handshake.started", "handshake.completed"])
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("the CareAgentClient reports the code and close code of a refusal", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const error = yield* Effect.flip(handshakeWith(neuron, yield* makePatientKey, { provider_npi: UNKNOWN_PROVIDER }))
      assert.strictEqual(error.reason, "Refused")
      assert.strictEqual(error.code, "PROVIDER_NOT_FOUND")
      assert.strictEqual(error.closeCode, 4004)
    }))

  it.scoped("audit entries never carry a token, a signature or a full key", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = patientKeyFromSeed(new Uint8Array(32).fill(3))
      const auth = yield* authMessage(key)
      yield* handshakeWith(neuron, key)
      const client = yield* open(neuron)
      yield* client.sendJson({ ...auth, consent_token_signature: auth.consent_token_signature.slice(0, 85) })
      yield* expectError(client, "INVALID_MESSAGE", 4002)
      const text = JSON.stringify(yield* neuron.audit.list())
      for (const secret of [key.publicKeyB64u, auth.consent_token_payload, auth.consent_token_signature.slice(0, 40)]) {
        assert.notInclude(text, secret)
      }
      const actions = (yield* neuron.audit.list()).map((e) => `${e.action}:${e.details.code ?? e.details.status}`)
      assert.deepStrictEqual(actions, [
        "handshake.started:undefined",
        "handshake.completed:new",
        "handshake.started:undefined",
        "handshake.failed:INVALID_MESSAGE"
      ])
      assert.strictEqual(PATIENT, "patient-agent-7")
    }))
})
