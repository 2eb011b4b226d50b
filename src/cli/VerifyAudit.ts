/**
 * `neuron verify-audit`: walks the audit chain in `<data dir>/neuron.db` from its first entry and names the first
 * broken one (exit code 1), or says it is intact (0) with its head hash, worth recording elsewhere (docs/store.md).
 * It reads the database file itself, read-only, so that it works whether the Neuron is running or not: an audit
 * is most wanted when the Neuron is not.
 */
import * as Command from "@effect/cli/Command"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { verifyChain } from "../store/AuditChain.js"
import { loadSettings } from "./AdminClient.js"
import { CliError } from "./CliError.js"
import * as Output from "./Output.js"

/** The chain's verdict, by the walk `AuditLog.verify` makes, on a read-only connection. */
const verifyFile = (filename: string) =>
  Effect.gen(function*() {
    // Loaded only here: the SQLite driver is not needed by the other commands, which start faster without it.
    const SqliteClient = yield* Effect.promise(() => import("@effect/sql-sqlite-node/SqliteClient"))
    return yield* verifyChain.pipe(
      Effect.provide(Layer.orDie(SqliteClient.layer({ filename, readonly: true, disableWAL: true })))
    )
  })

/** `neuron verify-audit [--json]`. */
export const verifyAudit = Command.make("verify-audit", { json: Output.json }, ({ json }) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const filename = `${settings.dataDir.replace(/\/+$/, "")}/neuron.db`
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(filename).pipe(Effect.orElseSucceed(() => false)))) {
      return yield* new CliError({ reason: "Local", message: `no Neuron database at ${filename} (NEURON_DATA_DIR)` })
    }
    const verdict = yield* verifyFile(filename).pipe(
      Effect.catchAllDefect((defect) =>
        new CliError({
          reason: "Local",
          message: `cannot read the audit log in ${filename}: ${
            defect instanceof Error ? defect.message : String(defect)
          }`
        })
      )
    )
    if (json) {
      yield* Output.printJson(
        verdict.ok
          ? { intact: true, entries: verdict.entries, head: verdict.head }
          : { intact: false, broken_at: verdict.brokenAt, reason: verdict.reason }
      )
    } else if (verdict.ok) {
      yield* Console.log(`audit chain intact: ${verdict.entries} entries, head ${verdict.head}`)
    } else {
      yield* Console.log(`audit chain broken at entry ${verdict.brokenAt}: ${verdict.reason}`)
    }
    if (!verdict.ok) return yield* new CliError({ reason: "Negative", message: "" })
  })).pipe(
    Command.withDescription(
      "Check the audit log's hash chain in the data folder. Exit code 0 intact, 1 broken (the first broken entry named)."
    )
  )
