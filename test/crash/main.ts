/**
 * `pnpm test:crash [--runs N] [--seed S] [--kills K]`: N seeded crash runs (default 10), seeds S, S+1, ... (a fresh
 * S, printed, when absent), each killing the Neuron K times (default 3). Prints each run's seed and, on a failure,
 * what failed and the exact command that replays it; exits 1 when any run failed. See `CrashRun.ts`.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { build } from "../support/process.js"
import { crashRun, enrollmentOf, freshSeed, replayCommand } from "./CrashRun.js"

const usage = "usage: pnpm test:crash [--runs N] [--seed S] [--kills K]"

const parse = (args: ReadonlyArray<string>) => {
  const options = { runs: 10, seed: freshSeed(), kills: 3 }
  for (let i = 0; i < args.length; i++) {
    const name = args[i]
    if (name === "--") continue
    const value = Number(args[i + 1])
    const key = name === "--runs" ? "runs" : name === "--seed" ? "seed" : name === "--kills" ? "kills" : undefined
    if (key === undefined || !Number.isSafeInteger(value) || value < (key === "seed" ? 0 : 1)) {
      console.error(`test:crash: bad argument ${name ?? ""} ${args[i + 1] ?? ""}\n${usage}`)
      process.exit(2)
    }
    options[key] = value
    i++
  }
  return options
}

const options = parse(process.argv.slice(2))
build()
console.log(`crash runs: ${options.runs} from seed ${options.seed}, ${options.kills} kills each`)

const program = Effect.gen(function*() {
  const failed: Array<number> = []
  for (let seed = options.seed; seed < options.seed + options.runs; seed++) {
    const started = Date.now()
    console.log(`run seed ${seed} (${enrollmentOf(seed) ? "with" : "without"} enrollment)`)
    const exit = yield* Effect.exit(crashRun({ seed, kills: options.kills, log: (line) => console.log(line) }))
    if (Exit.isSuccess(exit)) {
      const { acknowledged, notes } = exit.value
      console.log(
        `  ok in ${
          Date.now() - started
        } ms: ${acknowledged.providers} provider operations and ${acknowledged.handshakes} handshakes acknowledged`
      )
      for (const note of notes) console.log(`  note: ${note}`)
    } else {
      failed.push(seed)
      const defect = Cause.squash(exit.cause)
      console.log(`  FAILED: ${defect instanceof Error ? defect.message : String(defect)}`)
    }
  }
  console.log(`${options.runs - failed.length} of ${options.runs} runs passed`)
  if (failed.length > 0) {
    console.log(`replay a failure with:\n${failed.map((seed) => `  ${replayCommand(seed)}`).join("\n")}`)
    process.exitCode = 1
  }
})

// The registry in this process logs what it does: keep only its warnings and errors.
program.pipe(Logger.withMinimumLogLevel(LogLevel.Warning), NodeRuntime.runMain)
