/**
 * The sweep over many neurons on PostgreSQL: the database seeded (`pgSeed.ts`, 1.2 % of the neurons due a
 * transition), then `RegistryStore.sweep` timed as the monitor runs it: the lease statement and the one set-based
 * sweep statement, first with the due transitions, then steady (nothing due) a few times. The first sweep of a
 * registry just started runs on a new connection, in a new PostgreSQL backend whose first scan of the table maps
 * the shared buffers it reads into its process (about 70 ms at 100 000 neurons here, `pnpm bench axon-sweep`); so,
 * given a second database, the same sweep is also timed in a registry that has swept before (one sweep with
 * nothing due, its clock 200 s back), as an outage would find a registry that has been running.
 */
import * as Effect from "effect/Effect"
import { performance } from "node:perf_hooks"
import { RegistryStore } from "../../src/registry/RegistryStore.js"
import { runStatements, seedPg } from "./pgSeed.js"
import { migratePg } from "./processes.js"
import { services } from "./services.js"

const fmt = (n: number, digits = 1) => n.toLocaleString("en-US", { maximumFractionDigits: digits })

/** A clock `offsetMs` behind the real one. */
export const clockBehind = (offsetMs: number) => {
  const real = Effect.runSync(Effect.clock)
  return Object.assign(Object.create(real), {
    currentTimeMillis: Effect.sync(() => real.unsafeCurrentTimeMillis() - offsetMs),
    unsafeCurrentTimeMillis: () => real.unsafeCurrentTimeMillis() - offsetMs
  })
}

/** Migrates, runs `setup`, seeds; a registry's services on it. */
const prepare = async (url: string, neurons: number, setup: ReadonlyArray<string>) => {
  await migratePg(url)
  await runStatements(url, setup)
  const { due } = await seedPg(url, neurons, Date.now())
  return { due, registry: await services(url) }
}

/**
 * Seeds `neurons` into the database at `url` and times sweeps over them; with `runningUrl`, also the sweep with
 * the transitions in a registry that has swept before, on that database. `setup`: statements run after the
 * migrations and before the seed (`pnpm bench axon-sweep` rebuilds an earlier index set with them).
 */
export const measureSweep = async (
  url: string,
  neurons: number,
  setup: ReadonlyArray<string> = [],
  runningUrl?: string
) => {
  const { due, registry } = await prepare(url, neurons, setup)
  const timed = async (run: typeof registry) => {
    const store = run.get(RegistryStore)
    const started = performance.now()
    const result = await run.run(store.sweep(30_000))
    return { ms: performance.now() - started, ...result }
  }
  let first: Awaited<ReturnType<typeof timed>>
  const steady: Array<number> = []
  try {
    first = await timed(registry)
    for (let i = 0; i < 5; i++) steady.push((await timed(registry)).ms)
    steady.sort((a, b) => a - b)
  } finally {
    await registry.close()
  }
  const lines = [
    `${fmt(neurons, 0)} neurons seeded, ${fmt(due, 0)} due a transition`,
    `first sweep of a registry just started: ${fmt(first.ms)} ms, ${fmt(first.transitions, 0)} transitions ` +
    `(alerts written as rows)${first.swept ? "" : " (NOT swept: lease held elsewhere)"}`,
    `steady sweeps (nothing due), 5 runs: median ${fmt(steady[2]!)} ms, max ${fmt(steady[4]!)} ms`
  ]
  let runningMs: number | undefined
  if (runningUrl !== undefined) {
    const running = await prepare(runningUrl, neurons, setup)
    try {
      const store = running.registry.get(RegistryStore)
      await running.registry.run(store.sweep(30_000).pipe(Effect.withClock(clockBehind(200_000))))
      const sweep = await timed(running.registry)
      runningMs = sweep.ms
      lines.push(
        `the same in a registry that has swept before (nothing due then): ${fmt(sweep.ms)} ms, ${
          fmt(sweep.transitions, 0)
        } transitions`
      )
    } finally {
      await running.registry.close()
    }
  }
  return {
    neurons,
    lines,
    firstMs: first.ms,
    firstTransitions: first.transitions,
    due,
    runningMs,
    steadyMedianMs: steady[2]!,
    worstMs: Math.max(first.ms, steady[4]!)
  }
}
