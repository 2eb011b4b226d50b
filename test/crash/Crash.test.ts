/**
 * The crash test: the Neuron built as it runs in production (`node dist/main.js`), a child process against the
 * project's real registry, killed with SIGKILL at seeded random moments (start-up and registration, provider adds and
 * removes, handshakes in flight) and restarted on the same data folder, half the runs with an enrollment token.
 * After each kill and restart: `PRAGMA integrity_check` ok, the audit chain verifies, the event and audit tables never
 * lose a row, healthy again, one registration whose id never changed, every acknowledged operation present locally
 * and, within 5 s, at the registry. See `CrashRun.ts`; `pnpm test:crash --runs N --seed S` runs more.
 *
 * The series starts at a fresh even seed unless `CRASH_SEED` gives one; each test's title names its seed and the
 * command that replays it, and so does a failure's message.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { build } from "../support/process.js"
import { crashRun, enrollmentOf, freshSeed, replayCommand } from "./CrashRun.js"

const RUNS = 4
const KILLS = 2
// Even, so that runs 1 and 3 go without enrollment and runs 2 and 4 with it.
const base = process.env.CRASH_SEED === undefined ? freshSeed() * 2 % 1_000_000_000 : Number(process.env.CRASH_SEED)

// `pnpm start` builds dist/ first (a fraction of a second), then runs the bundle under plain node.
beforeAll(build)

describe("crash recovery: SIGKILL at seeded random moments, restart on the same data folder (node dist/main.js, real registry)", () => {
  for (let run = 0; run < RUNS; run++) {
    const seed = base + run
    it.live(
      `run ${run + 1} of ${RUNS}, seed ${seed} (replay: ${replayCommand(seed)}), ${
        enrollmentOf(seed) ? "with" : "without"
      } an enrollment token: ${KILLS} kills at start-up, registration, provider adds and removes, handshakes in flight; then integrity_check ok, audit chain verifies, event and audit rows never lost, healthy, one registration with an unchanged id, every acknowledged operation local and at the registry within 5 s`,
      () =>
        Effect.gen(function*() {
          const summary = yield* crashRun({ seed, kills: KILLS })
          assert.strictEqual(summary.kills.length, KILLS)
          assert.strictEqual(summary.enrollment, seed % 2 === 1)
          for (const note of summary.notes) yield* Effect.logWarning(`crash run seed ${seed}: ${note}`)
        }),
      // Bounded: about 10 s a run on a quiet machine; a shared, loaded one is several times slower.
      240_000
    )
  }
})
