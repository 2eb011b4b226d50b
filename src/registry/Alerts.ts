/**
 * Liveness alerts: each one a JSON line appended to `alerts-YYYYMMDD.jsonl` (the alert's UTC date) in the
 * registry's data folder, and read back, newest first, for `GET /alerts`. On SQLite the files are the record:
 * they survive restarts and an operator can `tail -f` them. On PostgreSQL the record is the `alerts` table
 * (written by the store, served by every instance), and each instance's files hold what it swept.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Alert } from "../protocol/AxonApi.js"
import { Availability } from "./Availability.js"
import type { NeuronEntry, Transition } from "./NeuronIndex.js"
import { RegistrySettings } from "./RegistrySettings.js"

const FILE = /^alerts-(\d{8})\.jsonl$/
const decodeLine = Schema.decodeUnknownEither(Schema.parseJson(Alert))
const decodeRecord = Schema.decodeSync(Alert)

/** An alert as written: the wire form of `Alert` (ISO-8601 timestamps). */
export type AlertRecord = typeof Alert.Encoded

/** The file for an alert whose ISO-8601 UTC timestamp is `iso`. */
export const fileNameFor = (iso: string): string =>
  `alerts-${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}.jsonl`

/** Alerts logged one by one up to this many in a batch; a larger batch (a mass outage) is logged as a summary. */
const LOG_EACH_UP_TO = 20

/** Appends and lists alerts. */
export class Alerts extends Effect.Service<Alerts>()("neuron/registry/Alerts", {
  effect: Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const sql = yield* SqlClient.SqlClient
    const { guard } = yield* Availability
    const { alertsInDatabase, dataDir } = yield* RegistrySettings
    // One writer at a time, so lines from two batches never interleave.
    const writeLock = yield* Effect.makeSemaphore(1)
    // Files this process has appended to: each then ends with a whole line.
    const whole = new Set<string>()

    /**
     * A newline when the file ends in a torn line (a process killed in the middle of an append): without it the next
     * alert would be glued to the torn one and be unreadable too. Checked once per file and process.
     */
    const healTornEnd = (file: string) =>
      Effect.gen(function*() {
        if (whole.has(file)) return ""
        whole.add(file)
        const size = yield* fs.stat(file).pipe(Effect.map((info) => Number(info.size)), Effect.orElseSucceed(() => 0))
        if (size === 0) return ""
        const last = yield* Effect.scoped(Effect.gen(function*() {
          const handle = yield* fs.open(file, { flag: "r" })
          yield* handle.seek(size - 1, "start")
          return yield* handle.readAlloc(1)
        }))
        return Option.isSome(last) && last.value[0] !== 0x0a ? "\n" : ""
      })

    /** Appends the alerts, one line each, one write per file. */
    const append = (alerts: ReadonlyArray<AlertRecord>): Effect.Effect<void> => {
      if (alerts.length === 0) return Effect.void
      const byFile = new Map<string, Array<string>>()
      for (const alert of alerts) {
        const name = fileNameFor(alert.ts)
        const lines = byFile.get(name) ?? []
        lines.push(JSON.stringify(alert) + "\n")
        byFile.set(name, lines)
      }
      return Effect.forEach(
        byFile,
        ([name, lines]) =>
          Effect.flatMap(
            healTornEnd(path.join(dataDir, name)),
            (prefix) => fs.writeFileString(path.join(dataDir, name), prefix + lines.join(""), { flag: "a" })
          ),
        { discard: true }
      ).pipe(
        writeLock.withPermits(1),
        Effect.tap(() =>
          alerts.length <= LOG_EACH_UP_TO ? Effect.forEach(alerts, logAlert, { discard: true }) : logSummary(alerts)
        ),
        // An alert file that cannot be written must not stop the monitor: say so loudly and go on.
        Effect.catchAll((error) =>
          Effect.logError("could not append alerts", { count: alerts.length, error: error.message })
        )
      )
    }

    /** Alerts newer than `since` (all when absent), newest first, at most `limit`, from the shared table. */
    const listRows = (options: { readonly since: Option.Option<DateTime.Utc>; readonly limit: number }) => {
      const since = Option.match(options.since, { onNone: () => -1, onSome: (since) => since.epochMillis })
      return guard(sql<{
        alert_type: Alert["alert_type"]
        registration_id: string
        organization_npi: string
        missed_beats: number
        last_seen: number
        action: string
        ts: number
      }>`SELECT alert_type, registration_id, organization_npi, missed_beats, last_seen, action, ts FROM alerts
        WHERE ts > ${since} ORDER BY ts DESC, id DESC LIMIT ${options.limit}`).pipe(
        Effect.map((rows) =>
          rows.map((row) =>
            decodeRecord({
              ...row,
              last_seen: new Date(row.last_seen).toISOString(),
              ts: new Date(row.ts).toISOString()
            })
          )
        )
      )
    }

    /** Alerts newer than `since` (all when absent), newest first, at most `limit`, from the files. */
    const listFiles = (options: { readonly since: Option.Option<DateTime.Utc>; readonly limit: number }) =>
      Effect.gen(function*() {
        const names = (yield* fs.readDirectory(dataDir)).filter((name) => FILE.test(name)).sort().reverse()
        const sinceFile = Option.map(options.since, (since) => fileNameFor(DateTime.formatIso(since)))
        const out: Array<Alert> = []
        for (const name of names) {
          if (out.length >= options.limit) break
          // Files are per day: one older than the day of `since` holds nothing newer than it.
          if (Option.isSome(sinceFile) && name < sinceFile.value) break
          const text = yield* fs.readFileString(path.join(dataDir, name))
          const lines = text.split("\n")
          for (let i = lines.length - 1; i >= 0; i--) {
            if (lines[i] === "") continue
            const decoded = decodeLine(lines[i])
            if (Either.isLeft(decoded)) continue // a torn last line after a crash, or a hand edit
            const alert = decoded.right
            if (Option.isSome(options.since) && !DateTime.greaterThan(alert.ts, options.since.value)) continue
            out.push(alert)
          }
        }
        out.sort((a, b) => b.ts.epochMillis - a.ts.epochMillis)
        return out.slice(0, options.limit)
      }).pipe(Effect.orDie)

    return { append, list: alertsInDatabase ? listRows : listFiles } as const
  }),
  accessors: false
}) {}

const logAlert = (alert: AlertRecord) =>
  (alert.alert_type === "neuron_recovered" ? Effect.logInfo : Effect.logWarning)(`alert ${alert.alert_type}`).pipe(
    Effect.annotateLogs({
      service: "Alerts",
      registration_id: alert.registration_id,
      organization_npi: alert.organization_npi,
      missed_beats: alert.missed_beats
    })
  )

const logSummary = (alerts: ReadonlyArray<AlertRecord>) => {
  const counts: Record<string, number> = {}
  for (const alert of alerts) counts[alert.alert_type] = (counts[alert.alert_type] ?? 0) + 1
  return Effect.logWarning(`${alerts.length} alerts in one sweep`).pipe(
    Effect.annotateLogs({ service: "Alerts", ...counts })
  )
}

/** An alert about `entry`, at `ts` (ISO-8601), in its written form (built directly: a mass outage makes many). */
export const make = (
  type: Alert["alert_type"],
  entry: NeuronEntry,
  missedBeats: number,
  ts: string,
  action: string
): AlertRecord => ({
  alert_type: type,
  registration_id: entry.registrationId,
  organization_npi: entry.organizationNpi,
  missed_beats: missedBeats,
  last_seen: new Date(entry.lastHeartbeatMs).toISOString(),
  action,
  ts
})

/** The alerts for the transitions found by one sweep at `nowMs`. */
export const fromTransitions = (transitions: ReadonlyArray<Transition>, nowMs: number): Array<AlertRecord> => {
  const ts = new Date(nowMs).toISOString()
  return transitions.map((t) =>
    t.to === "down"
      ? make("neuron_down", t.entry, t.missedBeats, ts, "marked down: no heartbeat for over 2 intervals")
      : make("neuron_deregistered", t.entry, t.missedBeats, ts, "deregistered: no heartbeat for over 3 intervals")
  )
}
