/**
 * A write the Neuron cannot store: the disk (or the database's size limit) is full, another process holds the
 * database's write lock past the bounded wait, the disk fails, or the file or its folder cannot be written.
 * PROTOCOL.md section 3: the admin API answers `503 STORAGE_UNAVAILABLE`, nothing is stored half-way, and writes
 * succeed again once the cause is gone. `classify` reads SQLite's error code off a driver error; the message is
 * written for the operator, never copied from SQLite (no SQL in an answer).
 */
import { SqlError } from "@effect/sql/SqlError"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/** Why storage is unavailable. */
export const StorageReason = Schema.Literal("full", "locked", "io_error", "read_only", "folder_unwritable")
/** @see StorageReason */
export type StorageReason = typeof StorageReason.Type

/** A write that could not be stored; nothing of it was written. */
export class StorageUnavailable extends Schema.TaggedError<StorageUnavailable>()("StorageUnavailable", {
  reason: StorageReason,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

const messages: Record<Exclude<StorageReason, "folder_unwritable">, string> = {
  full: "the Neuron's database is full (no space left on its disk): nothing was stored; free some space and try again",
  locked: "the Neuron's database is locked by another process: nothing was stored; try again once that process lets go",
  io_error: "the Neuron's database could not be written (a disk error): nothing was stored; check the disk",
  read_only: "the Neuron's database is read-only: nothing was stored; check the data folder's file system and owner"
}

/** SQLite's result code of a driver error (`SQLITE_FULL`, `SQLITE_BUSY_SNAPSHOT`, ...), when it has one. */
const sqliteCode = (error: unknown): string | undefined => {
  const inner = error instanceof SqlError ? error.cause : error
  const code = (inner as { code?: unknown } | undefined)?.code
  return typeof code === "string" && code.startsWith("SQLITE_") ? code : undefined
}

/** The reason for a SQLite result code, when it is one of storage (not a bug in a statement). */
export const reasonOf = (code: string): Option.Option<Exclude<StorageReason, "folder_unwritable">> =>
  code === "SQLITE_FULL" || code.startsWith("SQLITE_FULL_")
    ? Option.some("full")
    : code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")
    ? Option.some("locked")
    : code.startsWith("SQLITE_IOERR")
    ? Option.some("io_error")
    : code.startsWith("SQLITE_READONLY")
    ? Option.some("read_only")
    : Option.none()

/** A driver error (a `SqlError`, or the driver's own) as `StorageUnavailable` when storage is the cause. */
export const classify = (error: unknown): Option.Option<StorageUnavailable> => {
  const code = sqliteCode(error)
  if (code === undefined) return Option.none()
  return Option.map(
    reasonOf(code),
    (reason) => new StorageUnavailable({ reason, message: messages[reason], cause: new Error(code) })
  )
}
