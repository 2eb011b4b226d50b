/**
 * The `neuron` command against a real running Neuron (the built `dist/neuron.js` as a child process, the Neuron and
 * a real registry in this process): `status`, `provider add|remove|list` and `relationships list`, their exit codes
 * and their `--json` output parsed; and the one-line errors when no Neuron answers, the admin token is wrong or
 * missing, or the configuration is bad (PROTOCOL.md section 7).
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { handshake, handshakeUrl } from "../../src/careagent/CareAgentClient.js"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import { childScope, CLINIC, freePort, npiOf, waitUntil } from "../support/neuron.js"
import { build, runCommand } from "../support/process.js"
import { ADMIN_TOKEN, assertOneLineError, envFor, jsonOf, neuronWithToken } from "./support.js"

beforeAll(build)

// Each command is a new Node process: about a second on an idle machine, several under the load of a parallel run.
const COMMANDS_TIMEOUT = 300_000

describe("neuron status, provider, relationships (the built command against a running Neuron)", () => {
  it.scopedLive(
    "neuron status: exit 0 when healthy, with --json parsed (health and /v1/status) and the text form; exit 1 once degraded (the registry gone)",
    () =>
      Effect.gen(function*() {
        const registryScope = yield* childScope
        const { env, neuron, registry } = yield* neuronWithToken({
          registryScope,
          overrides: {
            heartbeatInterval: "300 millis",
            backoffBase: "100 millis",
            backoffCeiling: "300 millis",
            axonTimeout: "1 second"
          }
        })
        const [asJson, asText] = yield* Effect.all([
          runCommand(["status", "--json"], env),
          runCommand(["status"], env)
        ], { concurrency: "unbounded" })
        const status = jsonOf(asJson)
        assert.strictEqual(status.url, neuron.url)
        assert.strictEqual(status.health.status, "healthy")
        assert.strictEqual(status.status.registration, "registered")
        assert.strictEqual(status.status.organization_npi, CLINIC.npi)
        assert.strictEqual(status.status.axon_url, registry.url)
        assert.strictEqual(asText.code, 0, asText.stderr)
        assert.match(asText.stdout, new RegExp(`^neuron +${neuron.url}: healthy$`, "m"))
        assert.match(asText.stdout, /^registration +registered \(/m)
        assert.notInclude(asJson.stdout + asText.stdout, ADMIN_TOKEN)

        // The registry goes away: the next heartbeat fails and the Neuron says degraded.
        yield* Scope.close(registryScope, Exit.void)
        yield* waitUntil(
          "the Neuron to say degraded",
          Effect.map(neuron.neuron.health, (h) => h.status === "degraded")
        )
        const degraded = yield* runCommand(["status", "--json"], env)
        assert.strictEqual(degraded.code, 1, degraded.stderr)
        assert.strictEqual(JSON.parse(degraded.stdout).health.status, "degraded")
        assert.strictEqual(degraded.stderr, "")
      }),
    COMMANDS_TIMEOUT
  )

  it.scopedLive(
    "neuron provider add (201 registered, --json parsed; a bad NPI: exit 1 naming provider_npi), provider list (--json and table), provider remove (then 404: exit 1)",
    () =>
      Effect.gen(function*() {
        const { env, registry } = yield* neuronWithToken()
        const ada = npiOf(41)
        const grace = npiOf(42)
        const added = jsonOf(
          yield* runCommand(
            [
              "provider",
              "add",
              ada,
              "--name",
              "Dr. Ada Lovelace",
              "--type",
              "physician",
              "--type",
              "surgeon",
              "--json"
            ],
            env
          )
        )
        assert.strictEqual(added.outcome, "registered")
        assert.strictEqual(added.provider.provider_npi, ada)
        assert.deepStrictEqual(added.provider.provider_types, ["physician", "surgeon"])
        assert.strictEqual(added.provider.status, "registered")
        const text = yield* runCommand(["provider", "add", grace, "--name", "Dr. Grace Hopper"], env)
        assert.strictEqual(text.code, 0, text.stderr)
        assert.match(text.stdout, new RegExp(`^provider ${grace} registered with the registry`))
        // The registry has both.
        const entry = yield* Effect.promise(() =>
          fetch(`${registry.url}/v1/registry/${ada}`).then((r) => r.json() as Promise<any>)
        )
        assert.strictEqual(entry.name, "Dr. Ada Lovelace")

        assertOneLineError(
          yield* runCommand(["provider", "add", "1234567898", "--name", "Nobody"], env),
          1,
          /provider_npi.*\(400 INVALID_REQUEST\)$/
        )

        const [listed, table] = yield* Effect.all([
          runCommand(["provider", "list", "--json"], env),
          runCommand(["provider", "list"], env)
        ], { concurrency: "unbounded" })
        assert.deepStrictEqual(
          jsonOf(listed).providers.map((p: any) => [p.provider_npi, p.provider_name, p.status]).sort(),
          [[ada, "Dr. Ada Lovelace", "registered"], [grace, "Dr. Grace Hopper", "registered"]]
        )
        assert.strictEqual(table.code, 0, table.stderr)
        const rows = table.stdout.trim().split("\n")
        assert.match(rows[0]!, /^NPI +NAME +TYPES +STATUS +REGISTRY ERROR$/)
        assert.isTrue(rows.some((r) => r.startsWith(`${ada}  Dr. Ada Lovelace  physician,surgeon  registered`)))

        const removed = jsonOf(yield* runCommand(["provider", "remove", ada, "--json"], env))
        assert.deepStrictEqual(removed, { provider_npi: ada, status: "removed" })
        const after = jsonOf(yield* runCommand(["provider", "list", "--json"], env))
        assert.deepStrictEqual(after.providers.map((p: any) => p.provider_npi), [grace])
        assertOneLineError(yield* runCommand(["provider", "remove", ada], env), 1, /\(404 NOT_FOUND\)$/)
      }),
    COMMANDS_TIMEOUT
  )

  it.scopedLive(
    "neuron relationships list and terminate: a patient's handshake shows, --json parsed, --provider filters, the table names it; terminate ends it (exit 0), again or unknown is refused (exit 1)",
    () =>
      Effect.gen(function*() {
        const { env, neuron } = yield* neuronWithToken()
        const ada = npiOf(51)
        const grace = npiOf(52)
        yield* neuron.neuron.addProvider({ provider_npi: ada, provider_name: "Dr. Ada Lovelace" })
        yield* neuron.neuron.addProvider({ provider_npi: grace, provider_name: "Dr. Grace Hopper" })
        const key = yield* makePatientKey
        const done = yield* handshake({
          url: handshakeUrl(neuron.url),
          key,
          patient_agent_id: "patient-agent-cli-1",
          provider_npi: ada,
          consented_actions: ["chart.read"],
          patient_endpoint: "https://patient.example/agent"
        })
        const [all, forAda, forGrace, table] = yield* Effect.all([
          runCommand(["relationships", "list", "--json"], env),
          runCommand(["relationships", "list", "--provider", ada, "--json"], env),
          runCommand(["relationships", "list", "--provider", grace, "--json"], env),
          runCommand(["relationships", "list"], env)
        ], { concurrency: "unbounded" })
        const [relationship] = jsonOf(all).relationships
        assert.deepInclude(relationship, {
          relationship_id: done.relationship_id,
          patient_agent_id: "patient-agent-cli-1",
          provider_npi: ada,
          status: "active"
        })
        assert.deepStrictEqual(jsonOf(forAda).relationships.map((r: any) => r.relationship_id), [done.relationship_id])
        assert.deepStrictEqual(jsonOf(forGrace).relationships, [])
        assert.strictEqual(table.code, 0, table.stderr)
        assert.match(table.stdout, /^RELATIONSHIP +PATIENT AGENT +PROVIDER +STATUS +CREATED +ACTIONS$/m)
        assert.include(table.stdout, done.relationship_id)
        // The organization ends it: exit 0 and the relationship, now terminated; again (ALREADY_ENDED) and an
        // unknown id are refusals, exit 1, one line each.
        const ended = yield* runCommand(
          ["relationships", "terminate", done.relationship_id, "--reason", "the patient moved away", "--json"],
          env
        )
        assert.strictEqual(ended.code, 0, ended.stderr)
        assert.deepInclude(jsonOf(ended), {
          relationship_id: done.relationship_id,
          status: "terminated",
          end_reason: "the patient moved away"
        })
        const [again, unknown] = yield* Effect.all([
          runCommand(["relationships", "terminate", done.relationship_id, "--reason", "twice"], env),
          runCommand(["relationships", "terminate", "no-such-relationship", "--reason", "none"], env)
        ], { concurrency: "unbounded" })
        assertOneLineError(again, 1, /409|ALREADY_ENDED|not active|ended/i)
        assertOneLineError(unknown, 1, /404|no relationship|not found/i)
        const after = jsonOf(yield* runCommand(["relationships", "list", "--json"], env)).relationships
        assert.deepStrictEqual(after.map((r: any) => r.status), ["terminated"])
      }),
    COMMANDS_TIMEOUT
  )

  it.scopedLive(
    "one-line errors, exit 2: no Neuron running (status, provider list), a wrong admin token, no admin token, a bad configuration; a usage error exits 2",
    () =>
      Effect.gen(function*() {
        const { env, neuron } = yield* neuronWithToken()
        const nothing = { ...env, NEURON_PORT: String(yield* freePort) }
        const [statusDown, listDown, wrong, missing, badConfig, usage] = yield* Effect.all([
          runCommand(["status"], nothing),
          runCommand(["provider", "list", "--json"], nothing),
          runCommand(["provider", "list"], envFor(neuron, "not-the-admin-token-XYZ")),
          runCommand(["status"], { ...env, NEURON_ADMIN_TOKEN: "" }),
          runCommand(["provider", "list"], { ...env, NEURON_PORT: "abc" }),
          runCommand(["provider", "add", "--name", "No NPI"], env)
        ], { concurrency: "unbounded" })
        const port = nothing.NEURON_PORT
        assertOneLineError(
          statusDown,
          2,
          new RegExp(`no Neuron answers at http://127\\.0\\.0\\.1:${port} .*is it running\\?$`)
        )
        assertOneLineError(listDown, 2, /no Neuron answers at .*connection refused/)
        const refused = assertOneLineError(wrong, 2, /refused the admin token \(401\)/)
        assert.notInclude(refused, "not-the-admin-token-XYZ")
        assert.notInclude(refused, ADMIN_TOKEN)
        assertOneLineError(missing, 2, /requires an admin token \(401\): set NEURON_ADMIN_TOKEN/)
        assertOneLineError(badConfig, 2, /^neuron: configuration error: NEURON_PORT: /)
        assert.strictEqual(usage.code, 2, usage.stderr)
        assert.strictEqual(usage.stdout, "")
      }),
    COMMANDS_TIMEOUT
  )
})
