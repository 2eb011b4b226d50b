/**
 * `neuron init`: writes the commented configuration file (ConfigTemplate.ts) where the Neuron will read it: the
 * file `NEURON_CONFIG_FILE` names, else `neuron.conf` in the data folder. It holds a fresh admin token, so it is
 * written readable by its owner only (0600), atomically; an existing file is kept unless `--force`.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import { CONFIG_FILE_VARIABLE } from "../config/ConfigFile.js"
import { render } from "../config/ConfigTemplate.js"
import { defaultConfigFile } from "../config/NeuronConfig.js"
import { writeFileAtomic } from "../health/AtomicFile.js"
import { CliError } from "./CliError.js"
import * as Output from "./Output.js"

/** Where `init` writes: `NEURON_CONFIG_FILE`, else `<NEURON_DATA_DIR or ./data>/neuron.conf` (blank counts as unset). */
export const initTarget = (env: Record<string, string | undefined>): string => {
  const named = env[CONFIG_FILE_VARIABLE]?.trim()
  if (named !== undefined && named !== "") return named
  const dataDir = env.NEURON_DATA_DIR?.trim()
  return defaultConfigFile(dataDir === undefined || dataDir === "" ? "./data" : dataDir)
}

/** `neuron init [--force] [--json]`. */
export const init = Command.make(
  "init",
  {
    force: Options.boolean("force").pipe(Options.withDescription("replace an existing configuration file")),
    json: Output.json
  },
  ({ force, json }) =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const target = initTarget(process.env)
      const local = (what: string) => (e: { readonly message: string }) =>
        new CliError({ reason: "Local", message: `cannot ${what} ${target}: ${e.message}` })
      if (!force && (yield* fs.exists(target).pipe(Effect.mapError(local("check"))))) {
        return yield* new CliError({
          reason: "Local",
          message: `${target} already exists; it is kept (neuron init --force replaces it)`
        })
      }
      yield* fs.makeDirectory(path.dirname(target), { recursive: true }).pipe(
        Effect.mapError(local("create the folder of"))
      )
      // 32 random bytes, base64url: the same strength as the API keys of PROTOCOL.md section 7.
      const adminToken = randomBytes(32).toString("base64url")
      yield* writeFileAtomic(target, render({ NEURON_ADMIN_TOKEN: adminToken }), { mode: 0o600 }).pipe(
        Effect.mapError(local("write"))
      )
      if (json) return yield* Output.printJson({ config_file: path.resolve(target), admin_token_generated: true })
      yield* Console.log(
        `wrote ${target}: every setting at its default, commented out, and a new admin token (the file is readable ` +
          `by its owner only). Edit it, then start the Neuron with \`neuron start\`.`
      )
    })
).pipe(
  Command.withDescription(
    "Write a commented configuration file (every setting and its default, and a new admin token) into the data " +
      "folder, or where NEURON_CONFIG_FILE points. An existing file is kept unless --force."
  )
)
