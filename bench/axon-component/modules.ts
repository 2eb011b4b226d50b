/**
 * Packages the benchmark uses that the project has only as transitive dependencies (better-sqlite3 through
 * @effect/sql-sqlite-node, undici through @effect/platform-node): resolved from the package that depends on them.
 */
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../..")

const requireFrom = (pkg: string) =>
  createRequire(Path.join(Fs.realpathSync(Path.join(root, "node_modules", pkg)), "package.json"))

/** The part of better-sqlite3 the benchmark uses (the project has no types for it). */
export interface Statement {
  run(...params: ReadonlyArray<unknown>): { changes: number }
  get(...params: ReadonlyArray<unknown>): any
  all(...params: ReadonlyArray<unknown>): Array<any>
}
/** @see Statement */
export interface Db {
  prepare(sql: string): Statement
  exec(sql: string): void
  pragma(sql: string): unknown
  transaction<F extends (...args: Array<any>) => any>(f: F): F
  close(): void
}

/** better-sqlite3's constructor. */
export const Database: new(filename: string) => Db = requireFrom("@effect/sql-sqlite-node")("better-sqlite3")

/** undici's Pool. */
export const Pool: any = requireFrom("@effect/platform-node")("undici").Pool
