/**
 * Lifecycle benchmark:
 *   (a) a pure state transition (`Lifecycle.apply`, no I/O)                     target < 1 ms
 *   (b) a persisted transition: version check, snapshot, event row, audit row,
 *       one SQLite transaction with synchronous = FULL (median)                  target < 5 ms
 *   (c) rebuilding the state from 100 events (replay + rewrite of the snapshot) target < 10 ms
 * (b) and (c) run twice: on the work disk (`.bench/` in this folder) and on /dev/shm (tmpfs), because fsync
 * on this disk is noisy (TRAPS.md). The SQLite files are removed afterwards.
 *
 * Run: `pnpm tsx bench/lifecycle/index.ts`
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import { Npi } from "../../src/domain/Npi.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import * as Lifecycle from "../../src/store/Lifecycle.js"
import * as Events from "../../src/store/LifecycleEvent.js"
import { NeuronMigrations } from "../../src/store/migrations.js"
import { RegistrationStore } from "../../src/store/RegistrationStore.js"

const ORG = Npi.make("1234567893")
const PROVIDER = Npi.make("1558598797")
const PERSISTED = 300
const REBUILDS = 30
const WARM_UP = 1500

const organization = {
  organization_npi: ORG,
  organization_name: "Bench Clinic",
  organization_type: "practice",
  endpoint_url: "http://127.0.0.1:8700"
}
const registered = {
  registration_id: "reg-bench",
  bearer_token: Redacted.make("bench-token"),
  heartbeat_interval_s: 60,
  ttl_s: 180,
  axon_url: "http://127.0.0.1:8600"
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
const stats = (samples: Array<number>) => {
  const s = [...samples].sort((a, b) => a - b)
  return { median: percentile(s, 0.5), p90: percentile(s, 0.9), p99: percentile(s, 0.99), max: s[s.length - 1] }
}
const ms = (x: number) => `${x.toFixed(3)} ms`
const verdict = (value: number, target: number) => (value < target ? "OK" : "OVER TARGET")

// (a) Pure: a provider alternating between two sets of details, so that every apply really changes the state.
const pure = () => {
  const at = "2026-01-01T00:00:00.000Z"
  const a = new Events.ProviderAdded({ npi: PROVIDER, name: "Dr A" })
  const b = new Events.ProviderAdded({ npi: PROVIDER, name: "Dr B" })
  let state = Lifecycle.initial
  const rounds = 200_000
  for (let i = 0; i < 10_000; i++) state = Either.getOrThrow(Lifecycle.apply(state, i % 2 ? a : b, at))
  const start = performance.now()
  for (let i = 0; i < rounds; i++) state = Either.getOrThrow(Lifecycle.apply(state, i % 2 ? a : b, at))
  const perOp = (performance.now() - start) / rounds
  console.log(
    `(a) pure transition (Lifecycle.apply): ${(perOp * 1000).toFixed(2)} µs mean over ${rounds} ` +
      `[target < 1 ms] ${verdict(perOp, 1)}`
  )
}

// Baseline: better-sqlite3 directly (the driver under @effect/sql-sqlite-node) on a second file migrated with
// the same NeuronMigrations, same pragmas, the same statements as one store transition (2 reads, event row,
// snapshot row, provider row, audit head read, audit row). Run interleaved with (b), so that both see the
// same disk and the same machine load: the gap is this program's own cost, the rest is the disk.
const makeBaseline = (filename: string) => {
  const driver = createRequire(Fs.realpathSync("node_modules/@effect/sql-sqlite-node/package.json"))
  const Database = driver("better-sqlite3")
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = FULL")
  const q = {
    reg: db.prepare("SELECT * FROM registration WHERE id = 1"),
    prov: db.prepare("SELECT * FROM providers WHERE npi = ?"),
    ev: db.prepare(
      "INSERT INTO lifecycle_events (stream, version, type, payload, at) VALUES (?, ?, ?, ?, ?) RETURNING seq"
    ),
    wreg: db.prepare(
      "INSERT OR REPLACE INTO registration (id, state, version, last_seq, registration_id, bearer_token, axon_url, " +
        "heartbeat_interval_s, ttl_s, organization_npi, organization_name, organization_type, endpoint_url, " +
        "updated_at) VALUES (1, 'registered', 2, ?, 'reg', 'token', 'http://axon', 60, 180, '1234567893', " +
        "'Clinic', 'practice', 'http://127.0.0.1:8700', '2026-01-01T00:00:00.000Z')"
    ),
    wprov: db.prepare(
      "INSERT OR REPLACE INTO providers VALUES (?, 'pending', ?, NULL, ?, NULL, NULL, NULL, NULL, ?, ?)"
    ),
    head: db.prepare("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"),
    audit: db.prepare("INSERT INTO audit_log VALUES (?, ?, 'operator', 'lifecycle.ProviderAdded', ?, ?, ?, ?)")
  }
  const at = "2026-01-01T00:00:00.000Z"
  const write = db.transaction((i: number) => {
    q.reg.get()
    q.prov.get(PROVIDER)
    const [{ seq }] = q.ev.all(`provider:${PROVIDER}`, i, "ProviderAdded", JSON.stringify({ npi: PROVIDER, i }), at)
    q.wreg.run(seq)
    q.wprov.run(PROVIDER, i, `Dr ${i}`, at, at)
    const last = q.head.get() ?? { seq: 0, hash: "0".repeat(64) }
    q.audit.run(last.seq + 1, at, PROVIDER, JSON.stringify({ i }), last.hash, "f".repeat(64))
  })
  return {
    write: (i: number) => {
      const start = performance.now()
      write(i)
      return performance.now() - start
    },
    close: () => db.close()
  }
}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    yield* effect
    return performance.now() - start
  })

// (b): a fresh database, a registered Neuron, then persisted provider updates (each one really changes it).
const persisted = (where: string, dir: string, baseline: ReturnType<typeof makeBaseline>) =>
  Effect.gen(function*() {
    const store = yield* RegistrationStore
    const s = yield* store.startRegistration(0, organization)
    yield* store.recordRegistered(s.version, registered)
    const samples: Array<number> = []
    const raw: Array<number> = []
    for (let i = 0; i < PERSISTED; i++) {
      samples.push(yield* timed(store.addProvider({ npi: PROVIDER, name: `Dr ${i}` })))
      raw.push(baseline.write(i + 1))
    }
    const b = stats(samples)
    const r = stats(raw)
    console.log(
      `(b) persisted transition + event + audit row, ${where} (${dir}): median ${ms(b.median)}, p90 ${ms(b.p90)}, ` +
        `p99 ${ms(b.p99)}, max ${ms(b.max)} over ${PERSISTED} [target < 5 ms median] ${verdict(b.median, 5)}`
    )
    console.log(
      `    baseline, the same statements through the raw driver, interleaved, ${where}: median ${ms(r.median)}, ` +
        `p90 ${ms(r.p90)}, p99 ${ms(r.p99)}, max ${ms(r.max)}`
    )
  })

const rebuild = (where: string, dir: string) =>
  Effect.gen(function*() {
    const store = yield* RegistrationStore
    const s = yield* store.startRegistration(0, organization)
    yield* store.recordRegistered(s.version, registered)
    for (let i = 0; i < 98; i++) yield* store.addProvider({ npi: PROVIDER, name: `Dr ${i}` })
    const events = yield* store.events()
    if (events.length !== 100) throw new Error(`expected 100 events, have ${events.length}`)
    const samples: Array<number> = []
    for (let i = 0; i < REBUILDS; i++) samples.push(yield* timed(store.rebuild))
    const c = stats(samples)
    const readAndFold: Array<number> = []
    const fold: Array<number> = []
    for (let i = 0; i < REBUILDS; i++) {
      readAndFold.push(yield* timed(Effect.map(store.events(), (log) => Either.getOrThrow(Lifecycle.replay(log)))))
      fold.push(yield* timed(Effect.sync(() => Either.getOrThrow(Lifecycle.replay(events)))))
    }
    console.log(
      `(c) rebuild from 100 events (read + decode + replay + rewrite snapshot + audit row, one commit), ${where} ` +
        `(${dir}): median ${ms(c.median)}, max ${ms(c.max)} over ${REBUILDS} [target < 10 ms] ${verdict(c.median, 10)}`
    )
    console.log(
      `    of which reading + decoding + folding the 100 events: median ${ms(stats(readAndFold).median)}; ` +
        `the fold alone: median ${ms(stats(fold).median)}`
    )
  })

const onDisk = (where: string, root: string) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      Fs.mkdirSync(root, { recursive: true })
      return Fs.mkdtempSync(Path.join(root, "neuron-lifecycle-"))
    }),
    (dir) =>
      Effect.gen(function*() {
        const open = (name: string) => Sqlite.layer({ filename: Path.join(dir, name), migrations: NeuronMigrations })
        yield* Effect.provide(Effect.void, open("baseline.db"))
        yield* Effect.acquireUseRelease(
          Effect.sync(() => makeBaseline(Path.join(dir, "baseline.db"))),
          (baseline) =>
            Effect.provide(
              persisted(where, dir, baseline),
              RegistrationStore.Default.pipe(Layer.provide(open("b.db")))
            ),
          (baseline) => Effect.sync(() => baseline.close())
        )
        yield* Effect.provide(rebuild(where, dir), RegistrationStore.Default.pipe(Layer.provide(open("c.db"))))
      }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

// The first few hundred transitions of a process run cold (JIT): warm up on an in-memory database first, so
// that whichever folder is measured first is not penalised.
const warmUp = Effect.gen(function*() {
  const store = yield* RegistrationStore
  const s = yield* store.startRegistration(0, organization)
  yield* store.recordRegistered(s.version, registered)
  for (let i = 0; i < WARM_UP; i++) yield* store.addProvider({ npi: PROVIDER, name: `warm ${i}` })
  yield* store.rebuild
}).pipe(
  Effect.provide(
    RegistrationStore.Default.pipe(Layer.provide(Sqlite.layer({ filename: ":memory:", migrations: NeuronMigrations })))
  )
)

const main = Effect.gen(function*() {
  console.log(
    `Lifecycle benchmark (node ${process.version}, SQLite WAL, synchronous = FULL; load average ` +
      `${Os.loadavg().map((x) => x.toFixed(1)).join(" ")} on ${Os.cpus().length} CPUs)`
  )
  pure()
  yield* warmUp
  yield* onDisk("work disk", Path.resolve(".bench"))
  if (Fs.existsSync("/dev/shm")) yield* onDisk("tmpfs", "/dev/shm")
  else console.log("(b)/(c) on /dev/shm: skipped, no /dev/shm here")
}).pipe(
  // Every transition logs a line and every rebuild a warning, by design: keep the output to the figures.
  Effect.provide(Logger.remove(Logger.defaultLogger)),
  Effect.catchAllCause((cause) => Effect.sync(() => console.error(cause)))
)

await Effect.runPromise(main)
