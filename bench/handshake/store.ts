/**
 * `pnpm bench handshake --store`: the completion's write alone, in this process, without sockets or crypto, so that
 * a change to it can be judged on a noisy machine. The real RelationshipStore and AuditLog on a migrated SQLite file
 * (on /dev/shm when there is one) write completions (a relationship upsert and its two audit entries, as the
 * handshake's) in batches of 1 and of 4, alternately with the same work done directly on better-sqlite3 in the
 * same kind of transaction (the floor: what SQLite itself costs): the store's upsert, and the audit rows hashed
 * with the chain's own `entryHash` and inserted in one statement (without the store's compare-and-set on the
 * chain's head: the floor reads the head in its transaction instead). Prints server CPU per completion for both and
 * what the store allocates per completion (V8's sampling heap profile, collected objects included).
 *
 * Environment: BENCH_STORE_COMPLETIONS (8000 per round), BENCH_ROUNDS (3), BENCH_PROFILE=<folder> (a CPU profile of
 * one more round of each batch size through the store, `store-<batch>.cpuprofile`).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { createHash, randomUUID } from "node:crypto"
import * as Fs from "node:fs"
import { Session } from "node:inspector/promises"
import * as Path from "node:path"
import { type EstablishRequest, RelationshipStore, UPSERT } from "../../src/handshake/RelationshipStore.js"
import { entryHash } from "../../src/store/AuditChain.js"
import { dependencies, PROVIDER } from "../../test/handshake/fixture.js"
import { Database } from "./child.js"
import { heapBytes } from "./profile.js"

const COUNT = Number(process.env.BENCH_STORE_COMPLETIONS ?? 8_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const PROFILE = process.env.BENCH_PROFILE
const PATIENTS = 2_000
const base = Fs.existsSync("/dev/shm") ? "/dev/shm" : undefined
const dir = Fs.mkdtempSync(Path.join(base ?? (await import("node:os")).tmpdir(), "store-bench-"))

const request = (i: number): EstablishRequest => ({
  patient_agent_id: `patient-${i % PATIENTS}`,
  provider_npi: PROVIDER,
  patient_public_key: createHash("sha256").update(String(i % PATIENTS)).digest("base64url"),
  consented_actions: ["read:summary"]
})

const cpuPer = (since: NodeJS.CpuUsage, n: number) => {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / n
}

const program = Effect.gen(function*() {
  const context = yield* Layer.build(dependencies(dir, "10 seconds"))
  const store = Context.get(context, RelationshipStore)
  // One completion as the handshake writes it: the relationship, then handshake.started and handshake.completed.
  const complete = (i: number) =>
    new Promise<void>((resolve, reject) =>
      store.establishNow(request(i), {
        audit: (established) => [
          {
            at: new Date().toISOString(),
            actor: "anonymous",
            action: "handshake.started",
            subject: `connection-${i}`,
            details: { connection_id: `connection-${i}`, remote_address: "127.0.0.1" }
          },
          {
            actor: `patient:patient-${i % PATIENTS}`,
            action: "handshake.completed",
            subject: established.relationship_id,
            details: {
              connection_id: `connection-${i}`,
              status: established.status,
              provider_npi: PROVIDER,
              key_fingerprint: "0123456789abcdef",
              consented_actions: ["read:summary"]
            }
          }
        ]
      }, (exit) => Exit.isSuccess(exit) ? resolve() : reject(new Error(String(exit.cause))))
    )
  const viaStore = async (batch: number, first: number) => {
    const since = process.cpuUsage()
    for (let k = 0; k < COUNT; k += batch) {
      await Promise.all(Array.from({ length: batch }, (_, j) => complete(first + k + j)))
    }
    return cpuPer(since, COUNT)
  }

  // The floor: the same work, its statements prepared once, on a second connection to the same file.
  const db = new Database(Path.join(dir, "neuron.db"))
  db.pragma("synchronous = FULL")
  const upsert = db.prepare(UPSERT)
  const head = db.prepare("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
  const begin = db.prepare("BEGIN IMMEDIATE")
  const commit = db.prepare("COMMIT")
  const inserts = new Map<number, any>()
  const insert = (rows: number) => {
    let statement = inserts.get(rows)
    if (statement === undefined) {
      statement = db.prepare(
        `INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash) VALUES ${
          Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?, ?)").join(", ")
        }`
      )
      inserts.set(rows, statement)
    }
    return statement
  }
  const direct = (batch: number, first: number) => {
    const since = process.cpuUsage()
    for (let k = 0; k < COUNT; k += batch) {
      begin.run()
      const at = new Date().toISOString()
      let { hash, seq } = head.get() as { seq: number; hash: string }
      const params: Array<unknown> = []
      for (let j = 0; j < batch; j++) {
        const r = request(first + k + j)
        upsert.all(randomUUID(), r.patient_agent_id, r.provider_npi, r.patient_public_key, "[\"read:summary\"]", at, at)
        for (const action of ["handshake.started", "handshake.completed"]) {
          const details = JSON.stringify({ connection_id: `connection-${first + k + j}`, action })
          const next = entryHash({
            seq: seq + 1,
            at,
            actor: "anonymous",
            action,
            subject: null,
            details,
            prev_hash: hash
          })
          params.push(++seq, at, "anonymous", action, null, details, hash, next)
          hash = next
        }
      }
      insert(batch * 2).run(...params)
      commit.run()
    }
    return cpuPer(since, COUNT)
  }

  const session = new Session()
  session.connect()
  yield* Effect.promise(async () => {
    let next = 0
    for (const batch of [1, 4]) {
      await viaStore(batch, next)
      next += COUNT
      for (let round = 1; round <= ROUNDS; round++) {
        const store = await viaStore(batch, next)
        next += COUNT
        const floor = direct(batch, next)
        next += COUNT
        console.log(
          `batches of ${batch}, round ${round}: RelationshipStore ${store.toFixed(0)} µs, better-sqlite3 alone ${
            floor.toFixed(0)
          } µs of CPU per completion`
        )
      }
      await session.post("HeapProfiler.enable")
      await session.post("HeapProfiler.startSampling", {
        samplingInterval: 1024,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true
      })
      await viaStore(batch, next)
      next += COUNT
      const { profile } = await session.post("HeapProfiler.stopSampling")
      const file = Path.join(dir, `store-${batch}.heapprofile`)
      Fs.writeFileSync(file, JSON.stringify(profile))
      console.log(`batches of ${batch}: ${(heapBytes(file) / COUNT / 1024).toFixed(1)} KiB allocated per completion`)
      if (PROFILE !== undefined) {
        // One more round under V8's CPU profiler (BENCH_PROFILE=<folder>): where a completion's CPU goes.
        await session.post("Profiler.enable")
        await session.post("Profiler.setSamplingInterval", { interval: 100 })
        await session.post("Profiler.start")
        await viaStore(batch, next)
        next += COUNT
        const { profile: cpu } = await session.post("Profiler.stop")
        const out = Path.join(PROFILE, `store-${batch}.cpuprofile`)
        Fs.mkdirSync(PROFILE, { recursive: true })
        Fs.writeFileSync(out, JSON.stringify(cpu))
        console.log(`batches of ${batch}: CPU profile of ${COUNT} completions in ${out}`)
      }
    }
  })
  db.close()
})

await Effect.runPromise(Effect.scoped(program))
Fs.rmSync(dir, { recursive: true, force: true })
