/**
 * A rolling restart of the registry, as an operator upgrades it: three instances (`node dist/axon.js`, what
 * `pnpm start:axon` runs) on one PostgreSQL database, three real Neurons beating throughout, each with the three
 * instances in its registry list (in a different order, so each instance serves one of them; the Neuron's client
 * fails over from one URL to the next within a call, as a load balancer would move it). Each instance in turn gets
 * SIGTERM, is started again on its port and waits to be healthy. A patient's discovery, asked of a running instance
 * several times a second, finds every Neuron `reachable` throughout; no Neuron gets an alert, loses its
 * registration or registers again; a silent registration beside them is marked down and deregistered as usual (the
 * sweep went on); every instance serves afterwards.
 *
 * Short intervals through configuration: the Neurons beat every 3 s (the registry marks a neuron down after 6 s of
 * silence, sweeping every 1.5 s), and give a registry 1.5 s to answer.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Pg from "pg"
import type { Npi } from "../../src/domain/Npi.js"
import { npiOf, readHealthFile, readRecords, realSleep, startNeuron, waitFor, waitUntil } from "../support/neuron.js"
import { freshDatabase } from "../support/postgres.js"
import { type AxonInstance, build, registryReady, spawnAxon } from "../support/process.js"
import { call, heartbeat, register } from "./support.js"

/** The rows of a query on the shared database, from the test. */
const query = <A>(url: string, text: string) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: url })
    await client.connect()
    try {
      return (await client.query(text)).rows as Array<A>
    } finally {
      await client.end()
    }
  })

/** Every alert an instance serves (newest first). */
const alertsOf = (url: string) =>
  Effect.map(call(url, "GET", "/alerts?limit=1000"), (answer) => answer.body.alerts as Array<any>)

describe("a rolling restart of the registry on PostgreSQL", () => {
  build()

  it.scopedLive(
    "rolling restart of three registry instances on one PostgreSQL (SIGTERM, start again, wait healthy, one at a " +
      "time) with three Neurons beating throughout: discovery finds every Neuron reachable throughout, none is " +
      "marked down (no alert for any of them on any instance), none registers again, a silent registration is " +
      "still marked down and deregistered, and each instance serves after",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* freshDatabase()
        const instances: Array<AxonInstance> = yield* Effect.all([0, 1, 2].map(() => spawnAxon(databaseUrl)))
        yield* Effect.all(instances.map((i) => registryReady(i.url)), { concurrency: "unbounded" })
        const urls = instances.map((i) => i.url)

        const organizations: ReadonlyArray<{ readonly npi: Npi; readonly name: string }> = [0, 1, 2].map((n) => ({
          npi: npiOf(810 + n),
          name: `Clinic ${810 + n}`
        }))
        const neurons = yield* Effect.all(organizations.map((organization, n) =>
          startNeuron({
            // Neuron n starts with instance n, then fails over to the next ones.
            registryUrls: [...urls.slice(n), ...urls.slice(0, n)],
            organization,
            overrides: {
              heartbeatInterval: "3 seconds",
              axonTimeout: "1500 millis",
              backoffBase: "200 millis",
              backoffCeiling: "1 second"
            }
          })
        ))
        const healthy = (dataDir: string, after = "") =>
          waitFor(
            "the Neuron healthy and registered",
            Effect.map(readHealthFile(dataDir), (h) =>
              h?.status === "healthy" && h.registration === "registered" && (h.last_heartbeat_at ?? "") > after
                ? Option.some(h)
                : Option.none()),
            30_000
          )
        yield* Effect.all(neurons.map((n) => healthy(n.dataDir)), { concurrency: "unbounded" })
        const before = yield* Effect.all(neurons.map((n) => readRecords(n.dataDir)))
        const ids = before.map((r) => r.registration.registration_id as string)

        // Registered beside them and never beating: the sweep must go on through the restarts.
        const quiet = yield* register(urls[0]!, 1, { extra: { heartbeat_interval_s: 3 } })

        // A patient's discovery, several times a second, through an instance that is running. The lock keeps a
        // round and the start of a restart apart, so no round asks an instance that is being stopped.
        const restarting = new Set<number>()
        const lock = yield* Effect.makeSemaphore(1)
        const wrong: Array<string> = []
        const roundsWhileDown = [0, 0, 0]
        let rounds = 0
        const round = Effect.gen(function*() {
          const live = [0, 1, 2].filter((i) => !restarting.has(i))
          const target = instances[live[rounds % live.length]!]!
          for (const organization of organizations) {
            const found = yield* Effect.exit(call(target.url, "GET", `/v1/registry/${organization.npi}`))
            if (Exit.isFailure(found)) wrong.push(`${organization.npi} via ${target.url}: no answer`)
            else if (found.value.status !== 200 || found.value.body.status !== "reachable") {
              wrong.push(`${organization.npi} via ${target.url}: ${found.value.status} ${found.value.text}`)
            }
          }
          for (const i of restarting) roundsWhileDown[i]!++
          rounds++
        })
        const discovery = yield* Effect.forkScoped(
          Effect.forever(Effect.zipRight(lock.withPermits(1)(round), realSleep(150)))
        )

        for (const n of [0, 1, 2]) {
          const old = instances[n]!
          yield* lock.withPermits(1)(Effect.sync(() => restarting.add(n)))
          yield* old.child.signal("SIGTERM")
          assert.strictEqual(
            yield* old.child.exit,
            0,
            old.child.output().stderr + old.child.output().stdout.slice(-3000)
          )
          const started = yield* spawnAxon(databaseUrl, { port: old.port, dataDir: old.dataDir })
          yield* registryReady(started.url)
          instances[n] = started
          // Wait, as an operator would, until every Neuron has beaten again before the next instance goes.
          const restartedAt = new Date().toISOString()
          yield* Effect.all(neurons.map((neuron) => healthy(neuron.dataDir, restartedAt)), { concurrency: "unbounded" })
          yield* lock.withPermits(1)(Effect.sync(() => restarting.delete(n)))
        }

        // The sweep went on: the silent registration goes down, then is deregistered (one alert each).
        const alerts = yield* waitFor(
          "the silent registration deregistered",
          Effect.map(
            alertsOf(urls[0]!),
            (list) =>
              list.some((a) => a.alert_type === "neuron_deregistered" && a.registration_id === quiet.registration_id)
                ? Option.some(list)
                : Option.none()
          ),
          30_000
        )
        yield* lock.withPermits(1)(Fiber.interrupt(discovery))

        assert.deepStrictEqual(wrong, [], "discovery found every Neuron reachable throughout")
        assert.isAbove(rounds, 10)
        for (const n of [0, 1, 2]) {
          assert.isAbove(roundsWhileDown[n]!, 0, `discovery asked while instance ${n} restarted`)
        }
        assert.deepStrictEqual(alerts.filter((a) => ids.includes(a.registration_id)), [], "no alert for a Neuron")
        assert.deepStrictEqual(
          alerts.filter((a) => a.registration_id === quiet.registration_id).map((a) => a.alert_type),
          ["neuron_deregistered", "neuron_down"]
        )
        const rows = yield* query<{ registration_id: string; status: string }>(
          databaseUrl,
          "SELECT registration_id, status FROM neurons ORDER BY seq"
        )
        assert.deepStrictEqual(rows, [
          ...ids.map((id) => ({ registration_id: id, status: "reachable" })),
          { registration_id: quiet.registration_id, status: "deregistered" }
        ])
        for (const [n, neuron] of neurons.entries()) {
          const after = yield* readRecords(neuron.dataDir)
          assert.deepStrictEqual(after.events, ["RegistrationStarted", "Registered"], "registered once, never lost")
          assert.strictEqual(after.registration.registration_id, ids[n])
          assert.strictEqual((yield* readHealthFile(neuron.dataDir)).consecutive_failures, 0)
        }

        // Each instance serves after: the same alerts, a discovery, a heartbeat written through it.
        const token = before[0]!.bearerToken!
        for (const instance of instances) {
          assert.strictEqual((yield* call(instance.url, "GET", "/health")).status, 200)
          assert.deepStrictEqual(yield* alertsOf(instance.url), alerts)
          assert.strictEqual((yield* call(instance.url, "GET", `/v1/registry/${organizations[1]!.npi}`)).status, 200)
          assert.strictEqual(
            (yield* heartbeat(instance.url, ids[0]!, token, "https://neuron.riverside.test")).status,
            200
          )
        }
        yield* waitUntil(
          "a sweep after the restarts",
          Effect.map(
            call(urls[2]!, "GET", "/stats"),
            (s) => Date.parse(s.body.last_sweep_at ?? "") > Date.now() - 3_000
          ),
          10_000
        )
      }),
    120_000
  )
})
