#!/usr/bin/env node
/**
 * The `neuron` executable (the package's `bin`, bundled to `dist/neuron.js`; `pnpm neuron ...` in a checkout).
 * Failures are one line on stderr, `neuron: <message>`, with the exit codes of CliError.ts; a usage error prints
 * the command's help and exits 2.
 */
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { exitCodeOf } from "./CliError.js"
import { neuron } from "./Neuron.js"

// Stack traces name src/ files, as under `node --enable-source-maps` (for the programs `start` and `axon` load).
process.setSourceMapsEnabled(true)

const VERSION = "0.1.0"

const cli = Command.run(neuron, { name: "neuron", version: VERSION })

cli(process.argv).pipe(
  Effect.catchTags({
    CliError: (e) =>
      Effect.zipRight(
        e.message === "" ? Effect.void : Console.error(`neuron: ${e.message}`),
        Effect.sync(() => void (process.exitCode = exitCodeOf(e.reason)))
      )
  }),
  Effect.catchIf(ValidationError.isValidationError, () => Effect.sync(() => void (process.exitCode = 2))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: false })
)
