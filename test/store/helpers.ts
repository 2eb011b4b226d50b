/** Shared set-up for the store tests: a real SQLite file, and a logger that keeps every line. */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { Npi } from "../../src/domain/Npi.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"
import { RegistrationStore } from "../../src/store/RegistrationStore.js"

export const ORG = Npi.make("1234567893")
export const P1 = Npi.make("1558598797")
export const P2 = Npi.make("1234567802")

export const organization = {
  organization_npi: ORG,
  organization_name: "Riverside Clinic",
  organization_type: "practice",
  endpoint_url: "http://127.0.0.1:8700"
}

/** The store, its AuditLog and the SqlClient on `filename`, as a host would assemble them. */
export const storeLayer = (filename: string) =>
  RegistrationStore.DefaultWithoutDependencies.pipe(
    Layer.provideMerge(AuditLog.Default),
    Layer.provideMerge(Sqlite.layer({ filename, migrations: NeuronMigrations }))
  )

/** Runs `program` on the database at `filename` (opened, migrated, closed afterwards: one process lifetime). */
export const withStore = <A, E>(
  filename: string,
  program: Effect.Effect<A, E, RegistrationStore | AuditLog | SqlClient.SqlClient>
) => Effect.provide(program, storeLayer(filename))

/** Every log line at every level, formatted with its annotations, kept in `lines`. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.map(Logger.logfmtLogger, (line) => {
    lines.push(line)
  })
  const layer = Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(LogLevel.All))
  return { lines, layer }
}

/** Number of rows in the two logs. */
export const counts = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [e] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM lifecycle_events`
  const [a] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM audit_log`
  return { events: e.n, audit: a.n }
}).pipe(Effect.orDie)

/** Drops the append-only triggers, as someone tampering with the file would. */
export const dropTriggers = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  for (const t of ["lifecycle_events", "audit_log"]) {
    for (const op of ["update", "delete"]) yield* sql.unsafe(`DROP TRIGGER ${t}_no_${op}`)
  }
}).pipe(Effect.orDie)
