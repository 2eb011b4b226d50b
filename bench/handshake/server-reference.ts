/**
 * The reference of `pnpm bench handshake`, a child process: a plain `ws` + better-sqlite3 server doing, per
 * handshake, the work the public CareAgent Neuron (careagent/neuron) does, as read from its source
 * (src/routing/server.ts and handler.ts, src/relationships/handshake.ts and store.ts, src/audit/logger.ts,
 * src/storage/sqlite.ts). Written here from that reading, not copied: it stands in for careagent/neuron, which is
 * not on the npm registry, so that the bench can put this project next to it in the same run (issue 11: "ahead
 * of careagent/neuron").
 *
 * Per connection: the path checked through `new URL`, a session (a random UUID in a Map), the auth timer. On
 * `handshake.auth`: JSON.parse and a shape check, an audit line, the key imported from its JWK, the consent
 * token's signature verified and its claims parsed, the patient's relationships read (a statement prepared for
 * this query, every row mapped). An active one with this provider is answered `handshake.complete` (`existing`)
 * at once, **without the challenge** (careagent/neuron skips it; PROTOCOL.md section 2 and this project do not),
 * then another audit line. Otherwise a nonce (32 random bytes, hex) kept in a Map swept on each new challenge; on
 * `handshake.challenge_response`: the key imported again, the nonce's signature and the token's signature
 * verified again, the relationship inserted (statement prepared afresh), two audit lines. An audit line is the
 * entry's canonical JSON (sorted keys), its SHA-256 chained to the previous one, appended with `appendFileSync`.
 * SQLite in WAL mode with the default `synchronous` (FULL), as careagent/neuron opens it.
 */
import { createHash, createPublicKey, type KeyObject, randomBytes, randomUUID, verify } from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import { type WebSocket, WebSocketServer } from "ws"
import { Database, serve } from "./child.js"
import { ORG, PATH } from "./common.js"

const AUTH_TIMEOUT_MS = Number(process.argv[3] ?? 10_000)
const db = new Database(process.argv[2]!)
db.pragma("journal_mode = WAL")
db.pragma("foreign_keys = ON")
db.exec(`CREATE TABLE IF NOT EXISTS relationships (
  relationship_id TEXT PRIMARY KEY, patient_agent_id TEXT NOT NULL, provider_npi TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active','suspended','terminated')), consented_actions TEXT NOT NULL,
  patient_public_key TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)`)
db.exec("CREATE INDEX IF NOT EXISTS idx_relationships_patient ON relationships (patient_agent_id)")
db.exec("CREATE INDEX IF NOT EXISTS idx_relationships_provider ON relationships (provider_npi)")

/** Canonical JSON: object keys sorted at every depth. */
const canonical = (value: unknown): string => {
  if (value === null || typeof value !== "object") return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`
  const record = value as Record<string, unknown>
  return `{${
    Object.keys(record).sort().filter((k) => record[k] !== undefined).map((k) =>
      `${JSON.stringify(k)}:${canonical(record[k])}`
    ).join(",")
  }}`
}

/** The hash-chained JSONL audit file, appended synchronously. */
const auditPath = `${process.argv[2]!}.audit.jsonl`
let lastHash = "0".repeat(64)
let sequence = 0
const audit = (category: string, action: string, actor: string | undefined, details: Record<string, unknown>) => {
  const entry: Record<string, unknown> = {
    sequence: ++sequence,
    timestamp: new Date().toISOString(),
    category,
    action,
    prev_hash: lastHash
  }
  if (actor !== undefined) entry.actor = actor
  entry.details = details
  const hash = createHash("sha256").update(canonical(entry)).digest("hex")
  Fs.appendFileSync(auditPath, JSON.stringify({ ...entry, hash }) + "\n")
  lastHash = hash
}

const importKey = (text: string): KeyObject =>
  createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: text }, format: "jwk" })

/** The token's signature and claims, else an Error (careagent/neuron's ConsentError). */
const verifyToken = (payloadText: string, signatureText: string, key: KeyObject): any => {
  const payload = Buffer.from(payloadText, "base64url")
  if (!verify(null, payload, key, Buffer.from(signatureText, "base64url"))) throw new Error("invalid signature")
  const claims = JSON.parse(payload.toString("utf8"))
  if (typeof claims.provider_npi !== "string" || !Array.isArray(claims.consented_actions)) {
    throw new Error("malformed token")
  }
  if (claims.exp * 1000 <= Date.now()) throw new Error("consent expired")
  return claims
}

const strings = (message: any, fields: ReadonlyArray<string>) =>
  typeof message === "object" && message !== null && fields.every((f) => typeof message[f] === "string")

const sessions = new Map<string, { status: string; patient?: string; provider?: string }>()
const pending = new Map<string, { patient: string; provider: string; key: string; expiresAt: number }>()
const endpoint = "http://127.0.0.1"

const fail = (ws: WebSocket, code: string, closeCode: number, message: string) => {
  ws.send(JSON.stringify({ type: "handshake.error", code, message }))
  ws.close(closeCode, message)
}

const complete = (ws: WebSocket, relationship_id: string, provider: string, status: string) => {
  ws.send(JSON.stringify({
    type: "handshake.complete",
    relationship_id,
    provider_endpoint: `${endpoint}/ws/provider/${provider}`,
    status
  }))
  ws.close(1000, "Handshake complete")
}

const onConnection = (ws: WebSocket) => {
  const id = randomUUID()
  const session: { status: string; patient?: string; provider?: string } = { status: "authenticating" }
  sessions.set(id, session)
  let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(() => {
    timer = undefined
    fail(ws, "AUTH_TIMEOUT", 4001, "Auth timeout")
    audit("connection", "connection.timeout", undefined, { session_id: id })
  }, AUTH_TIMEOUT_MS)
  const cleanup = () => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    sessions.delete(id)
  }
  ws.on("error", cleanup)
  ws.on("close", cleanup)
  ws.once("message", (data, isBinary) => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    if (isBinary) return fail(ws, "INVALID_MESSAGE", 4002, "Binary not supported")
    let auth: any
    try {
      auth = JSON.parse(data.toString())
    } catch {
      return fail(ws, "INVALID_MESSAGE", 4002, "Invalid JSON")
    }
    const fields = ["type", "consent_token_payload", "consent_token_signature", "patient_agent_id"]
    if (!strings(auth, [...fields, "patient_public_key"]) || auth.type !== "handshake.auth") {
      return fail(ws, "INVALID_MESSAGE", 4002, "Invalid message")
    }
    session.patient = auth.patient_agent_id
    audit("connection", "connection.handshake_started", auth.patient_agent_id, { session_id: id })
    let provider: string
    try {
      provider =
        verifyToken(auth.consent_token_payload, auth.consent_token_signature, importKey(auth.patient_public_key))
          .provider_npi
    } catch (e) {
      return fail(ws, "CONSENT_FAILED", 4003, (e as Error).message)
    }
    session.provider = provider
    const existing = (db.prepare("SELECT * FROM relationships WHERE patient_agent_id = ?").all(
      auth.patient_agent_id
    ) as Array<any>).map((row) => ({ ...row, consented_actions: JSON.parse(row.consented_actions) })).find((r) =>
      r.provider_npi === provider && r.status === "active"
    )
    if (existing !== undefined) {
      session.status = "completed"
      complete(ws, existing.relationship_id, provider, "existing")
      return audit("connection", "connection.handshake_completed", auth.patient_agent_id, {
        session_id: id,
        relationship_id: existing.relationship_id,
        status: "existing",
        provider_npi: provider
      })
    }
    const nonce = randomBytes(32).toString("hex")
    const now = Date.now()
    pending.set(nonce, {
      patient: auth.patient_agent_id,
      provider,
      key: auth.patient_public_key,
      expiresAt: now + 30_000
    })
    for (const [n, p] of pending) if (now > p.expiresAt) pending.delete(n)
    session.status = "challenged"
    ws.send(JSON.stringify({ type: "handshake.challenge", nonce, provider_npi: provider, organization_npi: ORG }))
    ws.once("message", (data, isBinary) => {
      if (isBinary) return fail(ws, "INVALID_MESSAGE", 4002, "Binary not supported")
      let response: any
      try {
        response = JSON.parse(data.toString())
      } catch {
        return fail(ws, "INVALID_MESSAGE", 4002, "Invalid JSON")
      }
      if (!strings(response, ["type", "signed_nonce"]) || response.type !== "handshake.challenge_response") {
        return fail(ws, "INVALID_MESSAGE", 4002, "Invalid message")
      }
      const challenge = pending.get(nonce)
      pending.delete(nonce)
      try {
        if (challenge === undefined || Date.now() > challenge.expiresAt) throw new Error("unknown or expired nonce")
        const key = importKey(challenge.key)
        if (!verify(null, Buffer.from(nonce, "hex"), key, Buffer.from(response.signed_nonce, "base64url"))) {
          throw new Error("challenge failed")
        }
        const claims = verifyToken(auth.consent_token_payload, auth.consent_token_signature, key)
        if (claims.provider_npi !== challenge.provider) throw new Error("provider mismatch")
        const relationship_id = randomUUID()
        const at = new Date().toISOString()
        db.prepare(`INSERT INTO relationships (relationship_id, patient_agent_id, provider_npi, status,
          consented_actions, patient_public_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(
          relationship_id,
          challenge.patient,
          challenge.provider,
          "active",
          JSON.stringify(claims.consented_actions),
          challenge.key,
          at,
          at
        )
        audit("consent", "consent.relationship_established", challenge.patient, {
          relationship_id,
          provider_npi: challenge.provider,
          consented_actions: claims.consented_actions
        })
        session.status = "completed"
        complete(ws, relationship_id, challenge.provider, "new")
        audit("connection", "connection.handshake_completed", challenge.patient, {
          session_id: id,
          relationship_id,
          status: "new",
          provider_npi: challenge.provider
        })
      } catch (e) {
        fail(ws, "CONSENT_FAILED", 4003, (e as Error).message)
        audit("connection", "connection.handshake_failed", auth.patient_agent_id, {
          session_id: id,
          error: (e as Error).message,
          provider_npi: provider
        })
      }
    })
  })
}

const wss = new WebSocketServer({ noServer: true, maxPayload: 65_536 })
wss.on("wsClientError", (_error, socket) => socket.destroy())
wss.on("connection", onConnection)
const server = Http.createServer()
server.on("upgrade", (req, socket, head) => {
  if (new URL(req.url ?? "", `http://${req.headers.host}`).pathname !== PATH) return socket.destroy()
  socket.on("error", () => socket.destroy())
  wss.handleUpgrade(req, socket, head, (ws) => {
    socket.removeAllListeners("error")
    wss.emit("connection", ws, req)
  })
})
serve(server, () => db.close())
