/**
 * API keys and their rate limit (PROTOCOL.md section 7) on a real Neuron with the real registry: made and shown
 * once, kept as a SHA-256 only, sent as `X-API-Key` or `Authorization: Bearer`, scoped `read` / `admin`, refused
 * from the next request once revoked, audited by id and name; and the per-key token bucket under `TestClock`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import { createHash } from "node:crypto"
import * as Os from "node:os"
import * as RateLimiter from "../../src/access/RateLimiter.js"
import { call, neuronWithToken, readRecords, startNeuron, untilHealthy } from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

const ADMIN = "clinic-admin-3e8a1f6c9b2d7045"

/** The first non-loopback IPv4 address of this machine, if it has one. */
const externalAddress = (): string | undefined =>
  Object.values(Os.networkInterfaces()).flat().find((a) => a !== undefined && a.family === "IPv4" && !a.internal)
    ?.address

const withKey = (key: string) => ({ headers: { "x-api-key": key } })

describe("API keys", () => {
  it.scopedLive(
    "API keys: POST /v1/api-keys answers 201 with an nrn_ key shown once; GET /v1/api-keys lists id, name, scope, created_at, last_used_at, revoked_at and never the key or its hash; only the SHA-256 is stored; creation and revocation are audited by id and name",
    () =>
      Effect.gen(function*() {
        const { neuron } = yield* neuronWithToken({ token: ADMIN })
        const made = yield* call(neuron.url, "POST", "/v1/api-keys", {
          token: ADMIN,
          body: { name: "nightly export", scope: "read" }
        })
        assert.strictEqual(made.status, 201)
        assert.deepStrictEqual(Object.keys(made.body).sort(), ["created_at", "id", "key", "name", "scope"])
        const key: string = made.body.key
        assert.match(key, /^nrn_[A-Za-z0-9_-]{43}$/)
        assert.strictEqual(Buffer.from(key.slice(4), "base64url").length, 32)
        assert.strictEqual(made.body.name, "nightly export")
        assert.strictEqual(made.body.scope, "read")

        // A second key is another 32 random bytes.
        const other = yield* call(neuron.url, "POST", "/v1/api-keys", {
          token: ADMIN,
          body: { name: "operator laptop", scope: "admin" }
        })
        assert.notStrictEqual(other.body.key, key)

        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/providers", withKey(key))).status, 200)
        const listed = yield* call(neuron.url, "GET", "/v1/api-keys", { token: ADMIN })
        assert.strictEqual(listed.status, 200)
        assert.deepStrictEqual(listed.body.api_keys.map((k: any) => [k.id, k.name, k.scope, k.revoked_at]), [
          [made.body.id, "nightly export", "read", null],
          [other.body.id, "operator laptop", "admin", null]
        ])
        for (const k of listed.body.api_keys) {
          assert.deepStrictEqual(Object.keys(k).sort(), [
            "created_at",
            "id",
            "last_used_at",
            "name",
            "revoked_at",
            "scope"
          ])
        }
        assert.isString(listed.body.api_keys[0].last_used_at, "the key was used")
        assert.isNull(listed.body.api_keys[1].last_used_at, "the other key was not")
        const hash = createHash("sha256").update(key).digest("hex")
        assert.notInclude(listed.text, key)
        assert.notInclude(listed.text, hash)

        const records = yield* readRecords(neuron.dataDir)
        assert.deepStrictEqual(records.apiKeys.map((r) => [r.id, r.key_hash]), [
          [made.body.id, hash],
          [other.body.id, createHash("sha256").update(other.body.key).digest("hex")]
        ])
        assert.notInclude(JSON.stringify(records.apiKeys), key)

        assert.strictEqual(
          (yield* call(neuron.url, "DELETE", `/v1/api-keys/${made.body.id}`, { token: ADMIN })).status,
          204
        )
        const audit = (yield* readRecords(neuron.dataDir)).auditRows.filter((r) =>
          String(r.action).startsWith("api_key.")
        )
        assert.deepStrictEqual(audit.map((r) => [r.action, r.subject, r.actor, JSON.parse(String(r.details))]), [
          ["api_key.created", made.body.id, "admin", { name: "nightly export", scope: "read" }],
          ["api_key.created", other.body.id, "admin", { name: "operator laptop", scope: "admin" }],
          ["api_key.revoked", made.body.id, "admin", { name: "nightly export" }]
        ])
        const after = yield* call(neuron.url, "GET", "/v1/api-keys", { token: ADMIN })
        assert.isString(after.body.api_keys[0].revoked_at)
        assert.isTrue((yield* readRecords(neuron.dataDir)).verification.ok)
      })
  )

  it.scopedLive(
    "API keys: sent as X-API-Key or Authorization: Bearer; scope read may call GET routes only (403 otherwise), admin every admin route; a revoked key is 401 from the next request on; bad name or scope is 400 naming the field; an unknown id is 404",
    () =>
      Effect.gen(function*() {
        const { neuron } = yield* neuronWithToken({ token: ADMIN })
        const make = (name: string, scope: string) =>
          Effect.map(
            call(neuron.url, "POST", "/v1/api-keys", { token: ADMIN, body: { name, scope } }),
            (a) => a.body as { id: string; key: string }
          )
        const reader = yield* make("dashboard", "read")
        const operator = yield* make("operator", "admin")

        for (const path of ["/v1/status", "/v1/providers", "/v1/relationships", "/v1/api-keys"]) {
          assert.strictEqual((yield* call(neuron.url, "GET", path, withKey(reader.key))).status, 200, path)
          assert.strictEqual((yield* call(neuron.url, "GET", path, { token: reader.key })).status, 200, path)
          assert.strictEqual((yield* call(neuron.url, "GET", path, { token: operator.key })).status, 200, path)
        }
        const provider = { provider_npi: "1558598797", provider_name: "Dr. Ada Lovelace" }
        const denied = yield* call(neuron.url, "POST", "/v1/providers", { ...withKey(reader.key), body: provider })
        assert.strictEqual(denied.status, 403)
        assert.strictEqual(denied.body.error.code, "FORBIDDEN")
        assert.include(denied.body.error.message, "read")
        assert.strictEqual(
          (yield* call(neuron.url, "POST", "/v1/api-keys", { token: reader.key, body: { name: "x", scope: "admin" } }))
            .status,
          403
        )
        assert.strictEqual(
          (yield* call(neuron.url, "DELETE", `/v1/api-keys/${operator.id}`, withKey(reader.key))).status,
          403
        )
        assert.deepStrictEqual((yield* readRecords(neuron.dataDir)).providers, [])

        const added = yield* call(neuron.url, "POST", "/v1/providers", { token: operator.key, body: provider })
        assert.strictEqual(added.status, 201)
        const third = yield* call(neuron.url, "POST", "/v1/api-keys", {
          ...withKey(operator.key),
          body: { name: "made by a key", scope: "read" }
        })
        assert.strictEqual(third.status, 201)
        const actors = (yield* readRecords(neuron.dataDir)).auditRows.filter((r) => r.action === "api_key.created")
          .map((r) => r.actor)
        assert.deepStrictEqual(actors, ["admin", "admin", `api_key:${operator.id}`])

        // Revoked: refused on the very next request, in either header.
        assert.strictEqual(
          (yield* call(neuron.url, "DELETE", `/v1/api-keys/${reader.id}`, withKey(operator.key))).status,
          204
        )
        const revoked = yield* call(neuron.url, "GET", "/v1/status", withKey(reader.key))
        assert.strictEqual(revoked.status, 401)
        assert.strictEqual(revoked.body.error.code, "UNAUTHORIZED")
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", { token: reader.key })).status, 401)
        assert.strictEqual(
          (yield* call(neuron.url, "DELETE", `/v1/api-keys/${reader.id}`, { token: ADMIN })).status,
          204,
          "revoking twice changes nothing"
        )
        const unknown = yield* call(neuron.url, "DELETE", "/v1/api-keys/key_nothing", { token: ADMIN })
        assert.strictEqual(unknown.status, 404)
        assert.strictEqual(unknown.body.error.code, "NOT_FOUND")

        // A made-up key of the right shape, and something that is not a key.
        const forged = `nrn_${Buffer.alloc(32, 7).toString("base64url")}`
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", withKey(forged))).status, 401)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", withKey("hello"))).status, 401)

        const badScope = yield* call(neuron.url, "POST", "/v1/api-keys", {
          token: ADMIN,
          body: { name: "x", scope: "root" }
        })
        assert.strictEqual(badScope.status, 400)
        assert.include(badScope.body.error.message, "scope")
        const badName = yield* call(neuron.url, "POST", "/v1/api-keys", {
          token: ADMIN,
          body: { name: "", scope: "read" }
        })
        assert.strictEqual(badName.status, 400)
        assert.include(badName.body.error.message, "name")
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/api-keys", { token: ADMIN })).body.api_keys.length, 3)
      })
  )

  it.scopedLive(
    "API keys and the loopback rule: without an admin token a loopback peer needs no credential, a remote peer gets 403 without a key and 200 with one; a revoked or unknown key is 401 even from loopback",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const neuron = yield* startNeuron({ registryUrls: [registry.url], host: "0.0.0.0" })
        yield* untilHealthy(neuron.url)
        const made = yield* call(neuron.url, "POST", "/v1/api-keys", { body: { name: "remote", scope: "read" } })
        assert.strictEqual(made.status, 201)
        const external = externalAddress()
        assert.isDefined(external, "this test needs a non-loopback IPv4 address to call from")
        const remote = `http://${external}:${new URL(neuron.url).port}`
        assert.strictEqual((yield* call(remote, "GET", "/v1/status")).status, 403)
        assert.strictEqual((yield* call(remote, "GET", "/v1/status", withKey(made.body.key))).status, 200)
        assert.strictEqual((yield* call(neuron.url, "DELETE", `/v1/api-keys/${made.body.id}`)).status, 204)
        assert.strictEqual((yield* call(remote, "GET", "/v1/status", withKey(made.body.key))).status, 401)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", withKey(made.body.key))).status, 401)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status")).status, 200)
        const actor = (yield* readRecords(neuron.dataDir)).auditRows.find((r) => r.action === "api_key.created")?.actor
        assert.strictEqual(actor, "loopback")
      })
  )

  it.scopedLive(
    "rate limit: past NEURON_API_RATE_LIMIT requests a key gets 429 RATE_LIMITED with Retry-After in whole seconds (at least 1), other keys and the admin token are not affected",
    () =>
      Effect.gen(function*() {
        const { neuron } = yield* neuronWithToken({ token: ADMIN, overrides: { apiRateLimit: 3 } })
        const make = (name: string) =>
          Effect.map(
            call(neuron.url, "POST", "/v1/api-keys", { token: ADMIN, body: { name, scope: "read" } }),
            (a) => a.body.key as string
          )
        const busy = yield* make("busy")
        const calm = yield* make("calm")
        for (let i = 0; i < 3; i++) {
          assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", withKey(busy))).status, 200)
        }
        const limited = yield* call(neuron.url, "GET", "/v1/status", withKey(busy))
        assert.strictEqual(limited.status, 429)
        assert.strictEqual(limited.body.error.code, "RATE_LIMITED")
        const retryAfter = limited.headers["retry-after"]
        assert.match(retryAfter ?? "", /^[0-9]+$/)
        // 3 a minute: the next token comes within 20 s.
        assert.isAtLeast(Number(retryAfter), 1)
        assert.isAtMost(Number(retryAfter), 20)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", withKey(calm))).status, 200)
        for (let i = 0; i < 5; i++) {
          assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", { token: ADMIN })).status, 200)
        }
      })
  )
})

describe("API key rate limiter (token bucket)", () => {
  it.effect("rate limit: a burst of the limit, then one request per refilled token; Retry-After counts whole seconds, at least 1, under TestClock", () =>
    Effect.gen(function*() {
      const limiter = RateLimiter.make(60)
      const outcomes = (n: number) => Effect.forEach(Array.from({ length: n }), () => limiter.take("k"))
      const burst = yield* outcomes(61)
      assert.deepStrictEqual(burst.slice(0, 60).map((d) => d._tag), Array(60).fill("Allowed"))
      const limited = burst[60]!
      assert.strictEqual(limited._tag, "Limited")
      assert.strictEqual(limited._tag === "Limited" ? limited.retryAfterSeconds : 0, 1)
      // Another key has its own bucket.
      assert.strictEqual((yield* limiter.take("other"))._tag, "Allowed")

      yield* TestClock.adjust(Duration.millis(500))
      assert.strictEqual((yield* limiter.take("k"))._tag, "Limited", "half a token is not a token")
      yield* TestClock.adjust(Duration.millis(500))
      assert.strictEqual((yield* limiter.take("k"))._tag, "Allowed")
      assert.strictEqual((yield* limiter.take("k"))._tag, "Limited")

      // A long pause refills the bucket to the burst, not beyond.
      yield* TestClock.adjust(Duration.hours(1))
      const again = yield* outcomes(61)
      assert.strictEqual(again.filter((d) => d._tag === "Allowed").length, 60)
    }))

  it("rate limit: Retry-After is the time to the next whole token, rounded up to whole seconds", () => {
    const empty = { tokens: 0, at: 0 }
    const wait = (perMinute: number, bucket = empty, now = 0) => {
      const d = RateLimiter.take(bucket, now, perMinute)
      return d._tag === "Limited" ? d.retryAfterSeconds : 0
    }
    assert.strictEqual(wait(1), 60)
    assert.strictEqual(wait(7), 9) // 8.57 s
    assert.strictEqual(wait(600), 1) // 0.1 s, but never 0
    assert.strictEqual(wait(1, empty, 59_500), 1)
    assert.strictEqual(wait(1, empty, 60_000), 0, "a full token after a minute")
  })
})
