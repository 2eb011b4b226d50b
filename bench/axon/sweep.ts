/**
 * The sweep over many neurons on PostgreSQL: the database seeded (`pgSeed.ts`, 1.4 % of the neurons due a
 * transition), then `RegistryStore.sweep` timed as the monitor runs it: the lease statement and the one set-based
 * sweep statement, first with the due transitions, then steady (nothing due) a few times.
 */
import { performance } from "node:perf_hooks"
import { RegistryStore } from "../../src/registry/RegistryStore.js"
import { runStatements, seedPg } from "./pgSeed.js"
import { migratePg } from "./processes.js"
import { services } from "./services.js"

const fmt = (n: number, digits = 1) => n.toLocaleString("en-US", { maximumFractionDigits: digits })

/**
 * Seeds `neurons` into the database at `url` and times sweeps over them. `setup`: statements run after the
 * migrations and before the seed (`pnpm bench axon-sweep` rebuilds an earlier index set with them).
 */
export const measureSweep = async (url: string, neurons: number, setup: ReadonlyArray<string> = []) => {
  await migratePg(url)
  await runStatements(url, setup)
  const { due } = await seedPg(url, neurons, Date.now())
  const registry = await services(url)
  try {
    const store = registry.get(RegistryStore)
    const timed = async () => {
      const started = performance.now()
      const result = await registry.run(store.sweep(30_000))
      return { ms: performance.now() - started, ...result }
    }
    const first = await timed()
    const steady: Array<number> = []
    for (let i = 0; i < 5; i++) steady.push((await timed()).ms)
    steady.sort((a, b) => a - b)
    const lines = [
      `${fmt(neurons, 0)} neurons seeded, ${fmt(due, 0)} due a transition`,
      `first sweep: ${fmt(first.ms)} ms, ${fmt(first.transitions, 0)} transitions (alerts written as rows)${
        first.swept ? "" : " (NOT swept: lease held elsewhere)"
      }`,
      `steady sweeps (nothing due), 5 runs: median ${fmt(steady[2]!)} ms, max ${fmt(steady[4]!)} ms`
    ]
    return { neurons, lines, firstMs: first.ms, steadyMedianMs: steady[2]!, worstMs: Math.max(first.ms, steady[4]!) }
  } finally {
    await registry.close()
  }
}
