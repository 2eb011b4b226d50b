/**
 * Seeds the registry's database (schema from the registry's own migrations) and the baseline's with the same
 * registrations, fast: one better-sqlite3 transaction each. Tokens go to a file for the load process.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { withCheckDigit } from "../../src/domain/Npi.js"
import { migrations } from "../../src/registry/migrations.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { Database } from "./modules.js"

/** One seeded registration: id, bearer token, endpoint. */
export type Seeded = readonly [id: string, token: string]

/** The endpoint every seeded neuron registered (heartbeats repeat it, so no endpoint write happens). */
export const endpointOf = (i: number) => `https://neuron-${i}.bench.example.org`

const npiFor = (i: number): string => withCheckDigit("1" + String(i).padStart(8, "0"))

/** Makes `n` registrations (ids and tokens) and writes them to `tokensFile`. */
export const makeRegistrations = (n: number, tokensFile: string): Array<Seeded> => {
  const out: Array<Seeded> = []
  for (let i = 0; i < n; i++) out.push([Crypto.randomUUID(), Crypto.randomBytes(32).toString("base64url")])
  Fs.writeFileSync(tokensFile, JSON.stringify(out))
  return out
}

const sha256 = (token: string) => Crypto.createHash("sha256").update(token, "utf8").digest("hex")

/** Creates `<dataDir>/axon.db` with the registry's schema and the registrations, last heartbeat `lastBeatMs`. */
export const seedRegistry = async (dataDir: string, rows: ReadonlyArray<Seeded>, lastBeatMs: number) => {
  const filename = Path.join(dataDir, "axon.db")
  await Effect.runPromise(Effect.scoped(Layer.build(Sqlite.layer({ filename, migrations }))))
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  const insert = db.prepare(`INSERT INTO neurons (registration_id, organization_npi, organization_name,
    organization_type, neuron_endpoint_url, heartbeat_interval_s, token_hash, status, last_heartbeat_at, registered_at)
    VALUES (?, ?, ?, 'practice', ?, 60, ?, 'reachable', ?, ?)`)
  db.transaction(() => {
    rows.forEach(([id, token], i) =>
      insert.run(id, npiFor(i + 1), `Bench clinic ${i}`, endpointOf(i), sha256(token), lastBeatMs, lastBeatMs)
    )
  })()
  db.close()
}

/** Sets every registration's last heartbeat (to stage a mass outage for the sweep measurement). */
export const setAllLastBeats = (dataDir: string, lastBeatMs: number) => {
  const db = new Database(Path.join(dataDir, "axon.db"))
  db.prepare("UPDATE neurons SET last_heartbeat_at = ?, status = 'reachable'").run(lastBeatMs)
  db.prepare("DELETE FROM heartbeats").run()
  db.close()
}

/** Creates the baseline's database: the same ids, token hashes and endpoints. */
export const seedBaseline = (dataDir: string, rows: ReadonlyArray<Seeded>) => {
  const db = new Database(Path.join(dataDir, "baseline.db"))
  db.pragma("journal_mode = WAL")
  db.exec(`CREATE TABLE neurons (registration_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL,
    neuron_endpoint_url TEXT NOT NULL, last_heartbeat_at INTEGER NOT NULL)`)
  const insert = db.prepare("INSERT INTO neurons VALUES (?, ?, ?, ?)")
  const now = Date.now()
  db.transaction(() => rows.forEach(([id, token], i) => insert.run(id, sha256(token), endpointOf(i), now)))()
  db.close()
}
