/**
 * The bare baseline: plain `node:http` doing the same work as the registry on the two routes the benchmark
 * drives, on the same schema (the registry's own migrations) in a database of its own:
 *
 * - `POST /v1/neurons`: JSON body, the fields checked (NPI check digit, URL, lengths), a 32-byte random token and
 *   its SHA-256, a UUID, one `INSERT ... RETURNING` of the registration, `201` with the token;
 * - `PUT /v1/neurons/{id}/endpoint`: JSON body with a checked URL, the bearer token hashed, then one `UPDATE` that
 *   checks the token hash and moves the time (PostgreSQL); on SQLite the token is compared with a hash kept in
 *   memory and the row updated, as a bare SQLite server would.
 *
 * `node bare.ts sqlite <file>` (better-sqlite3, WAL, synchronous = FULL) or `node bare.ts pg <url>` (node-postgres
 * pool of 10). Prints `{"port":N}` on stdout when listening.
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import { isValidNpi } from "../../src/domain/Npi.js"
import { Database, Pg } from "./modules.js"

const [kind, target] = process.argv.slice(2) as ["sqlite" | "pg", string]

interface Store {
  readonly register: (row: ReadonlyArray<unknown>) => Promise<boolean>
  readonly beat: (id: string, tokenHash: string, url: string, nowMs: number) => Promise<boolean>
}

const INSERT_COLUMNS = `registration_id, organization_npi, organization_name, organization_type, neuron_endpoint_url,
  heartbeat_interval_s, token_hash, status, last_heartbeat_at, registered_at`

const sqliteStore = (file: string): Store => {
  const db = new Database(file)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = FULL")
  const insert = db.prepare(`INSERT INTO neurons (${INSERT_COLUMNS})
    VALUES (?, ?, ?, ?, ?, ?, ?, 'reachable', ?, ?) RETURNING seq`)
  const hashes = new Map<string, string>()
  for (const row of db.prepare("SELECT registration_id, token_hash FROM neurons").all()) {
    hashes.set(row.registration_id, row.token_hash)
  }
  const update = db.prepare(
    "UPDATE neurons SET last_heartbeat_at = ?, neuron_endpoint_url = ? WHERE registration_id = ?"
  )
  return {
    register: async (row) => {
      insert.get(...row)
      hashes.set(row[0] as string, row[6] as string)
      return true
    },
    beat: async (id, tokenHash, url, nowMs) => {
      const stored = hashes.get(id)
      if (stored === undefined || !Crypto.timingSafeEqual(Buffer.from(stored), Buffer.from(tokenHash))) return false
      update.run(nowMs, url, id)
      return true
    }
  }
}

const pgStore = (url: string): Store => {
  const pool = new Pg.Pool({ connectionString: url, max: 10 })
  pool.on("error", () => {})
  return {
    register: async (row) => {
      const result = await pool.query({
        name: "register",
        text: `INSERT INTO neurons (${INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 'reachable', $8, $9)
          ON CONFLICT (organization_npi) WHERE status <> 'deregistered' DO NOTHING RETURNING seq`,
        values: row as Array<unknown>
      })
      return result.rowCount === 1
    },
    beat: async (id, tokenHash, endpoint, nowMs) => {
      const result = await pool.query({
        name: "beat",
        text: `UPDATE neurons SET last_heartbeat_at = $1, neuron_endpoint_url = $2, status = 'reachable'
          WHERE registration_id = $3 AND token_hash = $4 AND status <> 'deregistered'`,
        values: [nowMs, endpoint, id, tokenHash]
      })
      return result.rowCount === 1
    }
  }
}

const store = kind === "pg" ? pgStore(target) : sqliteStore(target)

const isUrl = (s: unknown): s is string => {
  if (typeof s !== "string" || s.length > 2048) return false
  try {
    return /^(https?|wss?):$/.test(new URL(s).protocol)
  } catch {
    return false
  }
}
const isText = (s: unknown, max: number): s is string =>
  typeof s === "string" && s.length >= 1 && s.length <= max && !/[\u0000-\u001f\u007f]/.test(s)

const answer = (res: Http.ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}
const fail = (res: Http.ServerResponse, status: number, code: string) =>
  answer(res, status, { error: { code, message: code } })

const ROUTE = /^\/v1\/neurons\/([A-Za-z0-9_-]{1,128})\/endpoint$/
const TOKEN = /^Bearer ([A-Za-z0-9_-]{43})$/
const sha256 = (text: string) => Crypto.createHash("sha256").update(text, "utf8").digest("hex")

const register = async (res: Http.ServerResponse, json: any) => {
  const interval = json.heartbeat_interval_s ?? 60
  if (
    typeof json.organization_npi !== "string" || !isValidNpi(json.organization_npi) ||
    !isText(json.organization_name, 200) || !isText(json.organization_type, 64) ||
    !isUrl(json.neuron_endpoint_url) || !Number.isInteger(interval) || interval < 1 || interval > 3600
  ) return fail(res, 400, "INVALID_REQUEST")
  const token = Crypto.randomBytes(32).toString("base64url")
  const id = Crypto.randomUUID()
  const now = Date.now()
  const created = await store.register([
    id,
    json.organization_npi,
    json.organization_name,
    json.organization_type,
    json.neuron_endpoint_url,
    interval,
    sha256(token),
    now,
    now
  ])
  if (!created) return fail(res, 409, "ALREADY_REGISTERED")
  answer(res, 201, {
    registration_id: id,
    bearer_token: token,
    status: "reachable",
    heartbeat_interval_s: interval,
    ttl_s: interval * 3
  })
}

const beat = async (res: Http.ServerResponse, id: string, authorization: string | undefined, json: any) => {
  const url = json?.neuron_endpoint_url
  if (!isUrl(url)) return fail(res, 400, "INVALID_REQUEST")
  const token = TOKEN.exec(authorization ?? "")
  if (token === null) return fail(res, 401, "UNAUTHORIZED")
  const now = Date.now()
  if (!(await store.beat(id, sha256(token[1]!), url, now))) return fail(res, 401, "UNAUTHORIZED")
  answer(res, 200, { status: "reachable", last_heartbeat_at: new Date(now).toISOString() })
}

const server = Http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => chunks.push(chunk))
  req.on("end", () => {
    let json: any
    try {
      json = JSON.parse(Buffer.concat(chunks).toString("utf8"))
    } catch {
      return fail(res, 400, "INVALID_REQUEST")
    }
    const route = req.method === "PUT" ? ROUTE.exec(req.url ?? "") : null
    const done = route !== null
      ? beat(res, route[1]!, req.headers.authorization, json)
      : req.method === "POST" && req.url === "/v1/neurons"
      ? register(res, json)
      : Promise.resolve(fail(res, 404, "NOT_FOUND"))
    done.catch(() => fail(res, 500, "SERVER_ERROR"))
  })
})

server.listen(0, "127.0.0.1", () => {
  const address = server.address() as { port: number }
  process.stdout.write(JSON.stringify({ port: address.port }) + "\n")
})
process.on("SIGTERM", () => server.close(() => process.exit(0)))
