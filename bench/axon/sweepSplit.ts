/**
 * `pnpm bench axon-sweep`: where the time of a sweep that moves 1 200 neurons at once goes (issue 14), over
 * 100 000 neurons seeded on a throwaway PostgreSQL 15 (`pgSeed.ts`: 800 due `down`, 400 due deregistration), for
 * the index set of the migrations (`after`) and for the one before migration 0005 (`before`: the token's B-tree
 * rebuilt after migrating), alternately in the same run. Each repetition and index set, each on a fresh database:
 *
 * - as `pnpm bench axon` measures it (`sweep.ts`): the first sweep of a registry just started, then steady sweeps;
 * - split by the spans the registry emits (`RegistryStore.sweep`, and `sql.execute` per statement), the first
 *   sweep of a registry just started (`cold`), the same with the pool's connections opened and the table's
 *   catalogs loaded in the sweep's backend first (`primed`: a query through its indexes), and one after a sweep
 *   with nothing due (`warm`, that sweep's clock 200 s back): the lease statement; the sweep statement (sent, run, rows received and decoded); the rest (the
 *   rows mapped and the JSONL alert file); then the 1 200 alert rows read back through the same client (their
 *   transfer and decoding alone), and `Alerts.append` of 1 200 alerts alone, three times;
 * - the sweep statement through node-postgres on a new connection, nothing due yet, twice (the first run in a
 *   new backend, then again), then `EXPLAIN (ANALYZE, BUFFERS, WAL)` of it with the 1 200 due: the scan, the
 *   updates with their index entries, the alert rows.
 *
 * Flags: --neurons (100000), --repeat (3), --plans (print the plans of the first repetition).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Tracer from "effect/Tracer"
import * as Os from "node:os"
import { performance } from "node:perf_hooks"
import { parseArgs } from "node:util"
import { Alerts } from "../../src/registry/Alerts.js"
import { RegistryStore } from "../../src/registry/RegistryStore.js"
import { createDatabase, dropDatabase, startPostgresServer } from "../../test/support/postgresServer.js"
import { Pg } from "./modules.js"
import { runStatements, seedPg } from "./pgSeed.js"
import { migratePg } from "./processes.js"
import { services } from "./services.js"
import { clockBehind, measureSweep } from "./sweep.js"

const { values: flags } = parseArgs({
  options: {
    neurons: { type: "string", default: "100000" },
    repeat: { type: "string", default: "3" },
    plans: { type: "boolean", default: false }
  }
})
const NEURONS = Number(flags.neurons)
const REPEAT = Number(flags.repeat)
const fmt = (n: number, digits = 1) => n.toLocaleString("en-US", { maximumFractionDigits: digits })
const load = () => Os.loadavg().map((x) => x.toFixed(2)).join(" ")
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** The index sets compared: the migrations' own, and the token's B-tree of migration 0003 put back. */
const INDEX_SETS: Record<string, ReadonlyArray<string>> = {
  before: ["DROP INDEX neurons_token", "CREATE INDEX neurons_token ON neurons (token_hash)"],
  after: []
}

/** A tracer that keeps the name and duration (ms) of every span that ends. */
const recordingTracer = (ended: Array<{ name: string; ms: number }>) => {
  const base = Effect.runSync(Effect.tracer)
  return Tracer.make({
    context: (f, fiber) => base.context(f, fiber),
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = base.span(name, parent, context, links, startTime, kind, options)
      const end = span.end.bind(span)
      span.end = (endTime, exit) => {
        ended.push({ name, ms: Number(endTime - startTime) / 1e6 })
        end(endTime, exit)
      }
      return span
    }
  })
}

type Recorded = readonly [text: string, params: ReadonlyArray<unknown>]

const pg = await startPostgresServer()
const figures: Record<string, Record<string, Array<number>>> = {}
const note = (set: string, what: string, ms: number) => {
  ;((figures[set] ??= {})[what] ??= []).push(ms)
}
const fresh = async (setup: ReadonlyArray<string>) => {
  const url = await createDatabase(pg)
  await migratePg(url)
  await runStatements(url, setup)
  return url
}

try {
  for (let r = 1; r <= REPEAT; r++) {
    const sets = r % 2 === 1 ? ["before", "after"] : ["after", "before"]
    for (const set of sets) {
      const setup = INDEX_SETS[set]!
      console.log(`\n## repetition ${r}, index set ${set} (load ${load()}, ${new Date().toISOString()})`)

      // As `pnpm bench axon` measures it.
      const benchUrl = await createDatabase(pg)
      const bench = await measureSweep(benchUrl, NEURONS, setup)
      await dropDatabase(pg, benchUrl)
      if (bench.firstTransitions === bench.due) note(set, "bench first", bench.firstMs)
      note(set, "bench steady", bench.steadyMedianMs)
      console.log(
        `as the axon bench: first sweep ${fmt(bench.firstMs)} ms; steady median ${fmt(bench.steadyMedianMs)} ms`
      )

      // Split by spans, cold and warm.
      let recorded: Recorded | undefined
      for (const mode of ["cold", "primed", "warm"] as const) {
        const url = await fresh(setup)
        const { due } = await seedPg(url, NEURONS, Date.now())
        const registry = await services(url)
        try {
          const store = registry.get(RegistryStore)
          if (mode === "warm") {
            const statements: Array<Recorded> = []
            const warm = await registry.run(
              store.sweep(30_000).pipe(
                Statement.withTransformer((statement) => {
                  statements.push(statement.compile() as unknown as Recorded)
                  return Effect.succeed(statement)
                }),
                Effect.withClock(clockBehind(200_000))
              )
            )
            if (warm.transitions !== 0) throw new Error(`the warm-up sweep moved ${warm.transitions}`)
            recorded = statements[1]
          }
          if (mode === "primed") {
            // Two connections opened (the monitor may hold one), then the table and its indexes opened in the
            // backend the sweep will get (the pool hands out the last one released).
            await registry.run(
              Effect.flatMap(
                SqlClient.SqlClient,
                (sql) => Effect.all([sql`SELECT 1`, sql`SELECT 1`], { concurrency: "unbounded" })
              )
            )
            await registry.run(Effect.flatMap(SqlClient.SqlClient, (sql) =>
              sql`SELECT count(*) FROM neurons
                  WHERE registration_id = 'x' OR token_hash = 'y' OR organization_npi = 'z'`))
          }
          const ended: Array<{ name: string; ms: number }> = []
          const started = performance.now()
          const result = await registry.run(store.sweep(30_000).pipe(Effect.withTracer(recordingTracer(ended))))
          const wall = performance.now() - started
          const [lease, sweep] = ended.filter((s) => s.name === "sql.execute").map((s) => s.ms) as [number, number]
          const rest = wall - lease - sweep
          if (result.transitions !== due) {
            // The registry's own monitor swept first (a period boundary fell in between): not this figure.
            console.log(`${mode}: ${result.transitions} transitions of ${due} due (the monitor swept first): left out`)
            continue
          }
          note(set, `${mode} total`, wall)
          note(set, `${mode} lease`, lease)
          note(set, `${mode} statement`, sweep)
          note(set, `${mode} rest`, rest)
          console.log(
            `${mode}: ${fmt(wall)} ms, ${result.transitions} transitions of ${due} due: lease ${fmt(lease)} ms, ` +
              `sweep statement ${fmt(sweep)} ms, rest (rows mapped, alert file) ${fmt(rest)} ms`
          )
          if (mode === "warm") {
            // The returned rows' transfer and decoding alone: the same 1 200 rows read back.
            const t = performance.now()
            const rows = await registry.run(
              Effect.flatMap(
                SqlClient.SqlClient,
                (sql) =>
                  sql`SELECT alert_type, registration_id, organization_npi, missed_beats, last_seen, action
                FROM alerts`
              )
            )
            const readMs = performance.now() - t
            const ts = new Date().toISOString()
            const records = rows.map((row) => ({ ...row, last_seen: ts, ts })) as never
            const appendMs: Array<number> = []
            for (let i = 0; i < 3; i++) {
              const a = performance.now()
              await registry.run(Effect.flatMap(Alerts, (alerts) => alerts.append(records)))
              appendMs.push(performance.now() - a)
            }
            note(set, "rows read back", readMs)
            note(set, "append alone", median(appendMs))
            console.log(
              `${rows.length} alert rows read back: ${fmt(readMs)} ms; Alerts.append of them alone: ${
                appendMs.map((x) => fmt(x)).join(", ")
              } ms`
            )
          }
        } finally {
          await registry.close()
        }
        const client = new Pg.Client({ connectionString: url })
        await client.connect()
        await new Promise((resolve) => setTimeout(resolve, 1_100)) // statistics flushed by the idle backends
        const { rows: [upd] } = await client.query(`SELECT n_tup_upd::int AS upd, n_tup_hot_upd::int AS hot
          FROM pg_stat_user_tables WHERE relname = 'neurons'`)
        const { rows: indexes } = await client.query(`SELECT c.relname AS name, a.amname AS am,
          pg_relation_size(c.oid) / 8192 AS pages FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'neurons'::regclass ORDER BY 3 DESC`)
        await client.end()
        await dropDatabase(pg, url)
        if (mode === "warm" && r === 1) {
          console.log(
            `neurons: ${upd.upd} row updates (${upd.hot} HOT); indexes (pages after the sweep): ${
              indexes.map((i) => `${i.name} ${i.am} ${i.pages}`).join(", ")
            }`
          )
        }
      }

      // The statement under EXPLAIN, on a warm connection.
      const [text, params] = recorded!
      const warmNow = params.find((p) => typeof p === "number") as number
      const holder = params.find((p) => typeof p === "string" && /^[0-9a-f-]{36}$/.test(p)) as string
      const url = await fresh(setup)
      const nowMs = Date.now()
      await seedPg(url, NEURONS, nowMs)
      const client = new Pg.Client({ connectionString: url })
      await client.connect()
      try {
        await client.query(`INSERT INTO sweeper_lease (id, holder, expires_at) VALUES (1, $1, $2)`, [
          holder,
          nowMs + 600_000
        ])
        // Nothing due yet: the same statement, twice, on this new connection: the first run in a new backend
        // pays for mapping the shared buffers it touches into the process; the second shows the statement alone.
        for (const run of ["new backend", "same backend"]) {
          const t = performance.now()
          await client.query(text, params.map((p) => (p === warmNow ? nowMs - 200_000 : p)) as Array<unknown>)
          note(set, `nothing due, ${run}`, performance.now() - t)
        }
        const { rows } = await client.query(
          `EXPLAIN (ANALYZE, BUFFERS, WAL) ${text}`,
          params.map((p) => (p === warmNow ? nowMs : p)) as Array<unknown>
        )
        const plan = rows.map((row) => row["QUERY PLAN"] as string)
        if (flags.plans && r === 1) console.log("```\n" + plan.join("\n") + "\n```")
        const time = (re: RegExp) =>
          Number(/actual time=[\d.]+\.\.([\d.]+)/.exec(plan.find((l) => re.test(l)) ?? "")?.[1])
        const total = Number(/([\d.]+) ms/.exec(plan.find((l) => /Execution Time/.test(l))!)![1])
        const scan = time(/Seq Scan on neurons/)
        const update = time(/Update on neurons/)
        note(set, "explain total", total)
        note(set, "explain scan", scan)
        note(set, "explain updates", update - scan)
        note(set, "explain alert rows", total - update)
        console.log(
          `EXPLAIN ANALYZE: ${fmt(total)} ms: scan ${fmt(scan)} ms, updates and their index entries ${
            fmt(update - scan)
          } ms, alert rows and the rest ${fmt(total - update)} ms`
        )
      } finally {
        await client.end()
        await dropDatabase(pg, url)
      }
    }
  }
  console.log(`\n## medians of ${REPEAT} (load ${load()} at the end, ${new Date().toISOString()})\n`)
  const whats = Object.keys(figures.after ?? {})
  console.log(
    `| ms | ${Object.keys(INDEX_SETS).join(" | ")} |\n| --- | ${Object.keys(INDEX_SETS).map(() => "---").join(" | ")} |`
  )
  for (const what of whats) {
    console.log(`| ${what} | ${
      Object.keys(INDEX_SETS).map((set) => {
        const xs = figures[set]![what]!
        return `${fmt(median(xs))} (${xs.map((x) => fmt(x, 0)).join(", ")})`
      }).join(" | ")
    } |`)
  }
} finally {
  await pg.destroy()
}
