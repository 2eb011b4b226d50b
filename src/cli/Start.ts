/**
 * `neuron start` and `neuron axon`: the long-running processes. Each loads its own bundle, built next to this one
 * (`dist/main.js`, `dist/axon.js`: what `pnpm start` and `pnpm start:axon` ran before the command existed), so that
 * it runs exactly as it did: same configuration, logs, signals and exit codes, because it is the same program.
 * The other commands never load the Neuron, and start fast.
 */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import { CliError } from "./CliError.js"

/**
 * Runs the sibling bundle `name` (`main`, `axon`) in this process. Its module runs the program and takes over the
 * process (`NodeRuntime.runMain`, its signal handlers, its exit code); this command's own run then ends, removing
 * its signal handlers, so that the program's are the only ones, as when it is started directly.
 */
const runBundle = (name: string) =>
  Effect.gen(function*() {
    const url = new URL(`./${name}.js`, import.meta.url)
    if (!Fs.existsSync(fileURLToPath(url))) {
      return yield* new CliError({
        reason: "Local",
        message: `${fileURLToPath(url)} is missing: the \`neuron\` command runs from the build (pnpm build)`
      })
    }
    yield* Effect.promise(() => import(url.href))
  })

/** `neuron start`. */
export const start = Command.make("start", {}, () => runBundle("main")).pipe(
  Command.withDescription(
    "Run the Neuron (what `pnpm start` runs). Configured by the environment and the configuration file; " +
      "without AXON_REGISTRY_URL an Axon registry is embedded. SIGINT / SIGTERM stop it cleanly."
  )
)

/** `neuron axon`. */
export const axon = Command.make("axon", {}, () => runBundle("axon")).pipe(
  Command.withDescription(
    "Run the Axon registry on its own (what `pnpm start:axon` runs), configured by AXON_HOST, AXON_PORT, " +
      "AXON_DATA_DIR, AXON_ENROLLMENT_TOKEN and AXON_DATABASE_URL (PostgreSQL, shared by many instances) from the " +
      "environment."
  )
)
