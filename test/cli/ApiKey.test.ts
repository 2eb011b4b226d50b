/**
 * `neuron api-key create|list|revoke` (PROTOCOL.md section 7), the built command against a running Neuron: the key
 * printed once (alone on stdout, or in the --json answer), listed without the key, working as X-API-Key with its
 * scope, and refused (401) from the next request after `revoke`.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { call } from "../support/neuron.js"
import { build, runCommand } from "../support/process.js"
import { assertOneLineError, jsonOf, neuronWithToken } from "./support.js"

beforeAll(build)

// Each command is a new Node process: about a second on an idle machine, several under the load of a parallel run.
const COMMANDS_TIMEOUT = 300_000

const KEY = /^nrn_[A-Za-z0-9_-]{43}$/

describe("neuron api-key (the built command against a running Neuron)", () => {
  it.scopedLive(
    "api-key create prints the key once (--json parsed; text: the key alone on stdout), api-key list never shows a key (--json and table), the read key reads but cannot write, api-key revoke: refused (401) from the next request; an unknown id exits 1",
    () =>
      Effect.gen(function*() {
        const { env, neuron } = yield* neuronWithToken()
        const [readJson, adminText] = yield* Effect.all([
          runCommand(["api-key", "create", "--name", "dashboard", "--scope", "read", "--json"], env),
          runCommand(["api-key", "create", "--name", "provisioning", "--scope", "admin"], env)
        ], { concurrency: "unbounded" })
        const read = jsonOf(readJson)
        assert.match(read.key, KEY)
        assert.deepInclude(read, { name: "dashboard", scope: "read" })
        assert.strictEqual(adminText.code, 0, adminText.stderr)
        const adminKey = adminText.stdout.trim()
        assert.match(adminKey, KEY)
        assert.strictEqual(adminText.stdout, `${adminKey}\n`)
        assert.match(adminText.stderr, /^API key \S+ \(provisioning, scope admin\) created\. It is shown this once/)

        const [listed, table] = yield* Effect.all([
          runCommand(["api-key", "list", "--json"], env),
          runCommand(["api-key", "list"], env)
        ], { concurrency: "unbounded" })
        const keys = jsonOf(listed).api_keys
        assert.deepStrictEqual(keys.map((k: any) => [k.name, k.scope, k.revoked_at]).sort(), [
          ["dashboard", "read", null],
          ["provisioning", "admin", null]
        ])
        assert.strictEqual(table.code, 0, table.stderr)
        assert.match(table.stdout, /^ID +NAME +SCOPE +CREATED +LAST USED +REVOKED$/m)
        for (const text of [listed.stdout, table.stdout]) {
          assert.notInclude(text, read.key)
          assert.notInclude(text, adminKey)
        }

        // The keys work with their scopes.
        const headers = { "x-api-key": read.key }
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/providers", { headers })).status, 200)
        const write = yield* call(neuron.url, "POST", "/v1/providers", {
          headers,
          body: { provider_npi: "1558598797" }
        })
        assert.strictEqual(write.status, 403)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", { token: adminKey })).status, 200)

        const revoked = yield* runCommand(["api-key", "revoke", read.id], env)
        assert.strictEqual(revoked.code, 0, revoked.stderr)
        assert.strictEqual(revoked.stdout, `API key ${read.id} revoked: it is refused from the next request on\n`)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/providers", { headers })).status, 401)
        const after = jsonOf(yield* runCommand(["api-key", "list", "--json"], env)).api_keys
        assert.isString(after.find((k: any) => k.id === read.id).revoked_at)
        assert.isNull(after.find((k: any) => k.name === "provisioning").revoked_at)

        assertOneLineError(yield* runCommand(["api-key", "revoke", "no-such-key"], env), 1, /\(404 NOT_FOUND\)$/)
        assert.strictEqual((yield* runCommand(["api-key", "create", "--name", "x", "--scope", "root"], env)).code, 2)
      }),
    COMMANDS_TIMEOUT
  )
})
