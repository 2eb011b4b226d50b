/**
 * `pnpm bench axon-plans`: the PostgreSQL plans of the registry's statements, as docs/registry.md shows them. A
 * throwaway PostgreSQL 15 server (`test/support/postgresServer.ts`), the registry's migrations, 100 000 neurons and
 * 10 000 providers seeded (`pgSeed.ts`, 1.4 % due a transition) and analyzed; then each operation is run through
 * the registry's own services with a statement transformer that records every statement it sends (text and
 * parameters), inside a transaction that is rolled back; then each recorded statement is run again under
 * `EXPLAIN (ANALYZE, BUFFERS)`, in order, in one transaction that is rolled back too (so the sweep's plan is the
 * plan of a sweep that finds the due neurons). Flags: --neurons (100000).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Statement from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { parseArgs } from "node:util"
import type { Npi } from "../../src/domain/Npi.js"
import { withCheckDigit } from "../../src/domain/Npi.js"
import { RegisterNeuronRequest } from "../../src/protocol/AxonApi.js"
import { Discovery } from "../../src/registry/Discovery.js"
import { RegistryStore } from "../../src/registry/RegistryStore.js"
import { createDatabase, startPostgresServer } from "../../test/support/postgresServer.js"
import { Pg } from "./modules.js"
import { seededNpi, seededProviderNpi, seedPg } from "./pgSeed.js"
import { migratePg } from "./processes.js"
import { services } from "./services.js"

const { values: flags } = parseArgs({ options: { neurons: { type: "string", default: "100000" } } })
const NEURONS = Number(flags.neurons)

type Recorded = readonly [text: string, params: ReadonlyArray<unknown>]

class Rollback {
  readonly _tag = "Rollback"
}

// Where the statements sent now go: the transformer is installed for the operation's fiber and for every fiber
// the services forked at start (the group commit's writer, which sends the registrations, is one of them), and
// each operation points it at its list.
let sink: Array<Recorded> | undefined
const recording: Statement.Statement.Transformer = (statement) => {
  const [text, params] = statement.compile()
  if (sink !== undefined && !/^\s*(SAVEPOINT|RELEASE|ROLLBACK|BEGIN|COMMIT)/i.test(text)) sink.push([text, params])
  return Effect.succeed(statement)
}

/**
 * The statements `effect` sends, recorded inside a transaction that is then rolled back (a registration is
 * written by the group commit's writer in a transaction of its own, and kept).
 */
const record = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const recorded: Array<Recorded> = []
    sink = recorded
    yield* sql.withTransaction(
      Effect.zipRight(Statement.withTransformer(effect, recording), Effect.fail(new Rollback()))
    ).pipe(
      Effect.catchAll(() => Effect.void),
      Effect.ensuring(Effect.sync(() => void (sink = undefined)))
    )
    return recorded
  })

const compact = (text: string) => text.replace(/\s+/g, " ").trim()

const pg = await startPostgresServer()
try {
  const url = await createDatabase(pg)
  await migratePg(url)
  const { due } = await seedPg(url, NEURONS, Date.now())
  const registry = await services(url, recording)
  const store = registry.get(RegistryStore)
  const discovery = registry.get(Discovery)
  // A registration of our own, for a token the heartbeat can present.
  const npi = withCheckDigit("199999990")
  const mine = await registry.run(
    store.register(
      new RegisterNeuronRequest({
        organization_npi: npi as Npi,
        organization_name: "Plans clinic",
        organization_type: "practice",
        neuron_endpoint_url: "https://plans.example.org"
      }),
      undefined
    )
  )
  const token = Redacted.value(mine.token)
  const id = mine.entry.registrationId
  const operations: Array<readonly [string, Effect.Effect<unknown, unknown, any>]> = [
    [
      "registration (`POST /v1/neurons`, development mode)",
      store.register(
        new RegisterNeuronRequest({
          organization_npi: withCheckDigit("199999991") as Npi,
          organization_name: "Plans clinic 2",
          organization_type: "practice",
          neuron_endpoint_url: "https://plans2.example.org"
        }),
        undefined
      )
    ],
    [
      "heartbeat (`PUT /v1/neurons/{id}/endpoint`): the one statement",
      Effect.flatMap(
        Clock.clockWith(Effect.succeed),
        (clock) =>
          store.answerHeartbeat(
            clock,
            id,
            `Bearer ${token}`,
            JSON.stringify({ neuron_endpoint_url: "https://plans.example.org" })
          )
      )
    ],
    ["token check of the other neuron-scoped routes (`authorize`)", store.authorize(id, `Bearer ${token}`)],
    ["sweep (the sweeper's lease, then the set-based sweep)", store.sweep(30_000)],
    ["discovery of an organization NPI (`GET /v1/registry/{npi}`)", discovery.lookup(seededNpi(4242) as Npi)],
    ["discovery of a provider NPI (`GET /v1/registry/{npi}`)", discovery.lookup(seededProviderNpi(4240) as Npi)],
    ["listing, first page (`GET /v1/neurons?limit=100`)", store.listLive({ after: 0, limit: 100 })],
    [
      "listing, a later page filtered by status (`GET /v1/neurons?status=down&cursor=...`)",
      store.listLive({ after: 50_000, limit: 100, status: "down" })
    ],
    [
      "listing filtered by organization (`GET /v1/neurons?organization_npi=...`)",
      store.listLive({ after: 0, limit: 100, organizationNpi: seededNpi(777) })
    ],
    ["the monitor's period (every second, each instance)", store.shortestIntervalS],
    ["counts (`/health`, `/stats`)", store.counts]
  ]
  const recorded: Array<readonly [string, Array<Recorded>]> = []
  for (const [name, operation] of operations) recorded.push([name, await registry.run(record(operation))])
  await registry.close()

  const client = new Pg.Client({ connectionString: url })
  await client.connect()
  console.log(
    `PostgreSQL ${(await client.query("SHOW server_version")).rows[0].server_version}: ${
      NEURONS.toLocaleString("en-US")
    } neurons (${due} due a transition), ${(NEURONS / 10).toLocaleString("en-US")} providers, analyzed\n`
  )
  for (const [name, statements] of recorded) {
    console.log(`### ${name}\n`)
    await client.query("BEGIN")
    for (const [text, params] of statements) {
      const { rows } = await client.query(`EXPLAIN (ANALYZE, BUFFERS) ${text}`, params as Array<unknown>)
      console.log("```sql\n" + compact(text) + "\n```\n```")
      for (const row of rows) console.log(row["QUERY PLAN"])
      console.log("```\n")
    }
    await client.query("ROLLBACK")
  }
  await client.end()
} finally {
  await pg.destroy()
}
