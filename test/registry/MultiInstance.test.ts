/**
 * Many registry instances on one PostgreSQL database, as operators run them: three `node dist/axon.js`
 * processes (what `pnpm start:axon` runs) with one `AXON_DATABASE_URL`, started together.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Pg from "pg"
import { migrations as registryMigrations } from "../../src/registry/migrations.js"
import { waitFor } from "../support/neuron.js"
import { freshDatabase, scopedServer } from "../support/postgres.js"
import { type AxonInstance, build, type Child, registryReady, spawnAxon } from "../support/process.js"
import { call, heartbeat, npi, register, registration } from "./support.js"

const startInstance = (databaseUrl: string) => spawnAxon(databaseUrl)

const ready = (instance: AxonInstance) => registryReady(instance.url)

/** A query on the shared database, from the test. */
const query = <A>(url: string, text: string, values: Array<unknown> = []) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: url })
    await client.connect()
    try {
      return (await client.query(text, values)).rows as Array<A>
    } finally {
      await client.end()
    }
  })

/** The instance id a registry logged at start (`registry on PostgreSQL`). */
const instanceIdOf = (child: Child) => /"instance":"([0-9a-f-]{36})"/.exec(child.output().stdout)?.[1]

describe("many registry instances on one PostgreSQL", () => {
  build()

  it.scopedLive(
    "three instances started together: migrations run once; any instance answers any route with read-after-write; " +
      "two registrations of one NPI at once are one 201 and one 409; one provider added through two at once is one row",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* freshDatabase()
        const instances = yield* Effect.all([1, 2, 3].map(() => startInstance(databaseUrl)))
        yield* Effect.all(instances.map(ready), { concurrency: "unbounded" })
        const [a, b, c] = instances as [typeof instances[0], typeof instances[0], typeof instances[0]]
        const migrations = yield* query<{ n: number }>(
          databaseUrl,
          "SELECT count(*)::int AS n FROM effect_sql_migrations"
        )
        // Each migration recorded exactly once, though three instances started together.
        assert.strictEqual(migrations[0]!.n, Object.keys(registryMigrations).length)

        // Read-after-write: registered through a, seen at once through b and c; a token from a works on c.
        const reg = yield* register(a.url, 1)
        assert.strictEqual((yield* call(b.url, "GET", `/v1/registry/${npi(1)}`)).status, 200)
        assert.strictEqual((yield* heartbeat(c.url, reg.registration_id, reg.bearer_token)).status, 200)
        assert.strictEqual(
          (yield* call(b.url, "GET", `/v1/neurons/${reg.registration_id}`, { token: reg.bearer_token })).status,
          200
        )
        assert.strictEqual(
          (yield* call(c.url, "DELETE", `/v1/neurons/${reg.registration_id}`, {
            token: reg.bearer_token
          })).status,
          204
        )
        assert.strictEqual((yield* heartbeat(a.url, reg.registration_id, reg.bearer_token)).status, 404)

        // Races settled by the database, twenty times over.
        for (let n = 10; n < 30; n++) {
          const answers = yield* Effect.all(
            [a, b].map((i) => call(i.url, "POST", "/v1/neurons", { body: registration(n) })),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(answers.map((x) => x.status).sort(), [201, 409], `NPI ${n}`)
        }
        const live = yield* query<{ n: number }>(
          databaseUrl,
          "SELECT count(*)::int AS n FROM neurons WHERE status <> 'deregistered' GROUP BY organization_npi HAVING count(*) > 1"
        )
        assert.deepStrictEqual(live, [])

        const owner = yield* register(c.url, 40)
        for (let p = 100; p < 120; p++) {
          const added = yield* Effect.all(
            [a, b, c].map((i) =>
              call(i.url, "POST", `/v1/neurons/${owner.registration_id}/providers`, {
                token: owner.bearer_token,
                body: { provider_npi: npi(p), provider_name: `Dr. ${p}` }
              })
            ),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(added.map((x) => x.status).sort(), [200, 200, 201], `provider ${p}`)
          assert.strictEqual(new Set(added.map((x) => x.body.provider_id)).size, 1)
        }
        const rows = yield* query<{ n: number }>(databaseUrl, "SELECT count(*)::int AS n FROM providers")
        assert.strictEqual(rows[0]!.n, 20)
      }),
    120_000
  )

  it.scopedLive(
    "the sweeper killed with SIGKILL is replaced by another instance; exactly one alert per transition, " +
      "stored as rows and served by every instance",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* freshDatabase()
        const instances = yield* Effect.all([1, 2, 3].map(() => startInstance(databaseUrl)))
        yield* Effect.all(instances.map(ready), { concurrency: "unbounded" })
        // A 2-second interval: sweeps every second, the lease lasts 1.5 s. This neuron keeps beating (through
        // whichever instance answers) so that the period stays one second.
        const lively = yield* register(instances[0]!.url, 1, { extra: { heartbeat_interval_s: 2 } })
        let turn = 0
        yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
          const target = instances[turn++ % instances.length]!
          yield* heartbeat(target.url, lively.registration_id, lively.bearer_token).pipe(Effect.ignore)
          yield* Effect.sleep("300 millis")
        })))
        const holderOf = Effect.map(
          query<{ holder: string }>(databaseUrl, "SELECT holder FROM sweeper_lease WHERE id = 1"),
          (rows) => Option.fromNullable(rows[0]?.holder)
        )
        const first = yield* waitFor("a sweeper", holderOf, 30_000)
        const sweeper = instances.find((i) => instanceIdOf(i.child) === first)
        assert.isDefined(sweeper, "the lease is held by one of the three instances")
        yield* sweeper!.child.signal("SIGKILL")
        yield* sweeper!.child.exit
        const others = instances.filter((i) => i !== sweeper)
        const next = yield* waitFor(
          "another instance to take the sweep over",
          Effect.map(holderOf, Option.filter((holder) => holder !== first)),
          30_000
        )
        assert.include(others.map((i) => instanceIdOf(i.child)), next)
        const quiet = yield* register(others[0]!.url, 2, { extra: { heartbeat_interval_s: 2 } })
        // The silent neuron goes down, then is deregistered: one alert each, whichever instance swept.
        const alertsOf = (url: string) =>
          Effect.map(call(url, "GET", "/alerts"), (answer) => answer.body.alerts as Array<any>)
        const alerts = yield* waitFor(
          "the neuron to be deregistered",
          Effect.map(
            alertsOf(others[0]!.url),
            (list) =>
              list.some((x) => x.alert_type === "neuron_deregistered" && x.registration_id === quiet.registration_id)
                ? Option.some(list)
                : Option.none()
          ),
          30_000
        )
        assert.deepStrictEqual(
          alerts.filter((x) => x.registration_id === quiet.registration_id).map((x) => x.alert_type),
          ["neuron_deregistered", "neuron_down"]
        )
        assert.deepStrictEqual(yield* alertsOf(others[1]!.url), alerts)
        const stored = yield* query<{ n: number }>(
          databaseUrl,
          "SELECT count(*)::int AS n FROM alerts WHERE registration_id = $1",
          [quiet.registration_id]
        )
        assert.strictEqual(stored[0]!.n, 2)
      }),
    120_000
  )

  it.scopedLive(
    "the database stopped and started under load: 503 UNAVAILABLE and /health says so, no crash, serving again by itself",
    () =>
      Effect.gen(function*() {
        const server = yield* scopedServer
        const databaseUrl = yield* freshDatabase(server)
        const instances = yield* Effect.all([1, 2].map(() => startInstance(databaseUrl)))
        yield* Effect.all(instances.map(ready), { concurrency: "unbounded" })
        const reg = yield* register(instances[0]!.url, 1)
        const beatAll = Effect.all(
          instances.map((i) => heartbeat(i.url, reg.registration_id, reg.bearer_token)),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual((yield* beatAll).map((x) => x.status), [200, 200])
        yield* Effect.promise(() => server.stop())
        const down = yield* waitFor(
          "503 from every instance",
          Effect.map(beatAll, (answers) => (answers.every((x) => x.status === 503)
            ? Option.some(answers)
            : Option.none())),
          30_000
        )
        assert.strictEqual(down[0]!.body.error.code, "UNAVAILABLE")
        for (const i of instances) {
          const health = yield* call(i.url, "GET", "/health")
          assert.strictEqual(health.status, 503)
          assert.strictEqual(health.body.error.code, "UNAVAILABLE")
        }
        yield* Effect.promise(() => server.start())
        yield* waitFor(
          "every instance serving again",
          Effect.map(
            beatAll,
            (answers) => (answers.every((x) => x.status === 200) ? Option.some(true) : Option.none())
          ),
          30_000
        )
        for (const i of instances) {
          assert.strictEqual((yield* call(i.url, "GET", "/health")).status, 200)
          const output = i.child.output().stdout
          assert.include(output, "database unreachable")
          assert.include(output, "database reachable again")
          assert.notInclude(output + i.child.output().stderr, server.password)
        }
      }),
    120_000
  )
})
