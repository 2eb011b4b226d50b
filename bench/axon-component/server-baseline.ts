/**
 * The bare baseline: plain `node:http` + better-sqlite3 doing the same authenticated heartbeat as the registry
 * (route match, JSON body with a checked endpoint URL, bearer token hashed and compared in constant time, then
 * one `UPDATE ... last_heartbeat_at` per request, WAL with synchronous = FULL). Run as a child process.
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { Database } from "./modules.js"

const db = new Database(Path.join(process.argv[2]!, "baseline.db"))
db.pragma("journal_mode = WAL")
db.pragma("synchronous = FULL")
const hashes = new Map<string, Buffer>()
for (const row of db.prepare("SELECT registration_id, token_hash FROM neurons").all()) {
  hashes.set(row.registration_id, Buffer.from(row.token_hash, "hex"))
}
const update = db.prepare(
  "UPDATE neurons SET last_heartbeat_at = ?, neuron_endpoint_url = ? WHERE registration_id = ?"
)
const ROUTE = /^\/v1\/neurons\/([A-Za-z0-9_-]{1,128})\/endpoint$/
const TOKEN = /^Bearer ([A-Za-z0-9_-]{43})$/

const answer = (res: Http.ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}
const fail = (res: Http.ServerResponse, status: number, code: string) =>
  answer(res, status, { error: { code, message: code } })

const server = Http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const route = req.method === "PUT" ? ROUTE.exec(req.url ?? "") : null
  if (route === null) return fail(res, 404, "NOT_FOUND")
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => chunks.push(chunk))
  req.on("end", () => {
    let url: unknown
    try {
      url = JSON.parse(Buffer.concat(chunks).toString("utf8")).neuron_endpoint_url
      if (typeof url !== "string" || !/^(https?|wss?):$/.test(new URL(url).protocol)) throw new Error()
    } catch {
      return fail(res, 400, "INVALID_REQUEST")
    }
    const token = TOKEN.exec(req.headers.authorization ?? "")
    if (token === null) return fail(res, 401, "UNAUTHORIZED")
    const stored = hashes.get(route[1]!)
    const presented = Crypto.createHash("sha256").update(token[1]!, "utf8").digest()
    if (stored === undefined || !Crypto.timingSafeEqual(stored, presented)) return fail(res, 401, "UNAUTHORIZED")
    const now = Date.now()
    update.run(now, url, route[1])
    answer(res, 200, { status: "reachable", last_heartbeat_at: new Date(now).toISOString() })
  })
})

server.listen(0, "127.0.0.1", () => {
  const address = server.address() as { port: number }
  process.send!({ ready: true, port: address.port })
})
const delay = monitorEventLoopDelay({ resolution: 1 })
delay.enable()
process.on("message", (message: any) => {
  if (message.cmd === "delay-reset") {
    delay.reset()
    process.send!({})
  }
  if (message.cmd === "delay") process.send!({ p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 })
  if (message.cmd === "rss") process.send!({ maxRssKb: process.resourceUsage().maxRSS })
  if (message.cmd === "cpu") process.send!(process.cpuUsage())
  if (message.cmd === "stop") server.close(() => (db.close(), process.exit(0)))
})
