import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Crypto from "node:crypto"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { databaseFor, startRegistryWithServices, STORES } from "../support/registry.js"
import { call, heartbeat, npi, register } from "./support.js"

for (const store of STORES) {
  describe(`restart (${store})`, () => {
    it.scoped("a registry stopped and started on the same folder keeps registrations, tokens, providers and times", () =>
      Effect.gen(function*() {
        const dataDir = yield* Sqlite.makeTempDir("axon-")
        const database = yield* databaseFor(store)
        const enrollment = "enrollment-secret"
        const first = yield* Scope.make()
        const before = yield* startRegistryWithServices({ ...database, dataDir, enrollmentToken: enrollment }).pipe(
          Scope.extend(first)
        )
        yield* TestClock.setTime(1_000)
        const a = yield* register(before.url, 1, { enrollment, extra: { heartbeat_interval_s: 30 } })
        const gone = yield* register(before.url, 2, { enrollment })
        const rotated = yield* register(before.url, 3, { enrollment })
        const rotatedAgain = yield* register(before.url, 3, { enrollment }) // rotation: the first token is retired
        yield* call(before.url, "POST", `/v1/neurons/${a.registration_id}/providers`, {
          token: a.bearer_token,
          body: { provider_npi: npi(100), provider_name: "Dr. Ng", provider_endpoint_url: "https://ng.example.org" }
        })
        yield* call(before.url, "DELETE", `/v1/neurons/${gone.registration_id}`, { token: gone.bearer_token })
        yield* TestClock.setTime(7_000)
        // A heartbeat at 7 s that only the group commit writes (the clock is still: it happens at stop).
        assert.strictEqual(
          (yield* heartbeat(before.url, a.registration_id, a.bearer_token, "https://neuron-1.example.org")).status,
          200
        )
        const viewBefore = yield* call(before.url, "GET", `/v1/neurons/${a.registration_id}`, { token: a.bearer_token })
        const providersBefore = yield* call(before.url, "GET", `/v1/neurons/${a.registration_id}/providers`, {
          token: a.bearer_token
        })
        yield* Scope.close(first, Exit.void)

        const after = yield* startRegistryWithServices({ ...database, dataDir, enrollmentToken: enrollment })
        const viewAfter = yield* call(after.url, "GET", `/v1/neurons/${a.registration_id}`, { token: a.bearer_token })
        assert.strictEqual(viewAfter.status, 200)
        assert.deepStrictEqual(viewAfter.body, viewBefore.body)
        assert.strictEqual(viewAfter.body.last_heartbeat_at, "1970-01-01T00:00:07.000Z")
        assert.strictEqual(viewAfter.body.registered_at, "1970-01-01T00:00:01.000Z")
        assert.deepStrictEqual(
          (yield* call(after.url, "GET", `/v1/neurons/${a.registration_id}/providers`, { token: a.bearer_token })).body,
          providersBefore.body
        )
        assert.strictEqual((yield* call(after.url, "GET", `/v1/registry/${npi(100)}`)).body.name, "Dr. Ng")
        // Token hashes survive: the retired token is still unknown, the current one works, the deregistered 404s.
        assert.strictEqual((yield* heartbeat(after.url, rotated.registration_id, rotated.bearer_token)).status, 401)
        assert.strictEqual(
          (yield* heartbeat(after.url, rotated.registration_id, rotatedAgain.bearer_token)).status,
          200
        )
        assert.strictEqual((yield* heartbeat(after.url, gone.registration_id, gone.bearer_token)).status, 404)
        assert.strictEqual((yield* heartbeat(after.url, a.registration_id, gone.bearer_token)).status, 401)
        assert.strictEqual((yield* heartbeat(after.url, a.registration_id, rotatedAgain.bearer_token)).status, 403)
        assert.deepInclude((yield* call(after.url, "GET", "/stats")).body, {
          total_neurons: 2,
          reachable_neurons: 2,
          total_providers: 1
        })
        // Duplicates are still refused without the enrollment token after the restart.
        assert.strictEqual(
          (yield* call(after.url, "POST", "/v1/neurons", {
            body: { ...viewAfter.body, organization_type: "practice" }
          }))
            .status,
          401
        )
      }))

    it.scoped("the database keeps only SHA-256 hashes of bearer tokens, never the tokens", () =>
      Effect.gen(function*() {
        const { dataDir, sql, url } = yield* startRegistryWithServices({ store })
        const a = yield* register(url, 1)
        const [row] = yield* sql<{ token_hash: string }>`SELECT token_hash FROM neurons`.pipe(Effect.orDie)
        assert.strictEqual(row!.token_hash, Crypto.createHash("sha256").update(a.bearer_token).digest("hex"))
        const fs = yield* FileSystem.FileSystem
        for (const name of yield* fs.readDirectory(dataDir)) {
          const bytes = Buffer.from(yield* fs.readFile(`${dataDir}/${name}`))
          assert.strictEqual(bytes.indexOf(a.bearer_token), -1, name)
        }
      }).pipe(Effect.provide(NodeContext.layer)))
  })
}
