/**
 * The bare baseline of `pnpm bench handshake`, a child process: a plain `ws` server (no Effect) doing the work
 * of the handshake with the same messages on the wire. Per connection: JSON.parse of each frame, the key
 * checked (canonical, not small-order) and imported once as a JWK, the consent token's signature verified,
 * its claims parsed and checked, a nonce of 32 random bytes, the nonce's signature verified, then one
 * relationship insert (`ON CONFLICT DO NOTHING`, and a read when it already existed) with better-sqlite3 on
 * WAL + synchronous = FULL, `handshake.complete`, close 1000.
 *
 * With `obligations` as its third argument (`BENCH_FLOOR=1`): the floor of what the Neuron must do, still bare.
 * Each completion is one transaction holding what the Neuron writes for it: the Neuron's own upsert (a returning
 * patient's row is updated, its consented actions taken from the token) and the two audit entries,
 * `handshake.started` and `handshake.completed`, hash-chained with the Neuron's `entryHash` and inserted in one
 * statement, committed with an fsync. No group commit: one transaction per completion.
 */
import { ed25519, ED25519_TORSION_SUBGROUP } from "@noble/curves/ed25519.js"
import { createHash, createPublicKey, type KeyObject, randomBytes, randomUUID, verify } from "node:crypto"
import * as Http from "node:http"
import { type WebSocket, WebSocketServer } from "ws"
import { Database, serve } from "./child.js"
import { ORG, PATH, PROVIDER } from "./common.js"

const AUTH_TIMEOUT_MS = Number(process.argv[3] ?? 10_000)
const db = new Database(process.argv[2]!)
db.pragma("journal_mode = WAL")
db.pragma("synchronous = FULL")
db.exec(`CREATE TABLE IF NOT EXISTS relationships (
  relationship_id TEXT PRIMARY KEY, patient_agent_id TEXT NOT NULL, provider_npi TEXT NOT NULL,
  patient_public_key TEXT NOT NULL, consented_actions TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active','revoked')), created_at TEXT NOT NULL, updated_at TEXT NOT NULL)`)
db.exec(`CREATE UNIQUE INDEX IF NOT EXISTS relationships_active
  ON relationships (patient_agent_id, provider_npi) WHERE status = 'active'`)
const insert = db.prepare(`INSERT INTO relationships VALUES (?, ?, ?, ?, ?, 'active', ?, ?)
  ON CONFLICT (patient_agent_id, provider_npi) WHERE status = 'active' DO NOTHING RETURNING relationship_id`)
const findActive = db.prepare(`SELECT relationship_id, patient_public_key FROM relationships
  WHERE patient_agent_id = ? AND provider_npi = ? AND status = 'active'`)

/** A completion's connection, for the floor's `handshake.started` entry. */
interface Connection {
  readonly id: string
  readonly startedAt: string
  readonly remote: string | null
}

/**
 * The floor's writes (see above), made only with `obligations`: the plain baseline stays bare (no Effect modules
 * loaded, no audit table). Returns the completion's write: the relationship (undefined: another key holds the
 * active one) and its two audit entries in one transaction.
 */
const makeFloor = async () => {
  const { UPSERT } = await import("../../src/handshake/RelationshipStore.js")
  const { entryHash, GENESIS_HASH } = await import("../../src/store/AuditChain.js")
  db.exec(`CREATE TABLE IF NOT EXISTS audit_log (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, subject TEXT, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`)
  db.exec("CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action, seq)")
  const upsert = db.prepare(UPSERT)
  const begin = db.prepare("BEGIN IMMEDIATE")
  const commit = db.prepare("COMMIT")
  const rollback = db.prepare("ROLLBACK")
  const insertAudit = db.prepare(`INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?)`)
  let chainHead = (db.prepare("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").get() as
    | { seq: number; hash: string }
    | undefined) ?? { seq: 0, hash: GENESIS_HASH }

  // One entry linked after `chainHead`, as the Neuron's audit log writes it (details: keys in sorted order).
  const link = (at: string, actor: string, action: string, subject: string, details: object) => {
    const fields = {
      seq: chainHead.seq + 1,
      at,
      actor,
      action,
      subject,
      details: JSON.stringify(details),
      prev_hash: chainHead.hash
    }
    const row = { ...fields, hash: entryHash(fields) }
    chainHead = { seq: row.seq, hash: row.hash }
    return [row.seq, row.at, row.actor, row.action, row.subject, row.details, row.prev_hash, row.hash]
  }

  return (
    claims: any,
    publicKey: string,
    connection: Connection
  ): { readonly relationship_id: string; readonly status: string } | undefined => {
    const now = new Date().toISOString()
    const id = randomUUID()
    const saved = chainHead
    begin.run()
    try {
      const row = upsert.get(
        id,
        claims.patient_agent_id,
        PROVIDER,
        publicKey,
        JSON.stringify(claims.consented_actions),
        now,
        now
      ) as { relationship_id: string } | undefined
      if (row === undefined) {
        rollback.run()
        return undefined
      }
      const status = row.relationship_id === id ? "new" : "existing"
      const fingerprint = createHash("sha256").update(Buffer.from(publicKey, "base64url")).digest("hex")
      insertAudit.run(
        ...link(connection.startedAt, "anonymous", "handshake.started", connection.id, {
          connection_id: connection.id,
          remote_address: connection.remote
        }),
        ...link(now, `patient:${claims.patient_agent_id}`, "handshake.completed", row.relationship_id, {
          connection_id: connection.id,
          consented_actions: claims.consented_actions,
          key_fingerprint: "sha256:" + fingerprint.slice(0, 16),
          provider_npi: PROVIDER,
          status
        })
      )
      commit.run()
      return { relationship_id: row.relationship_id, status }
    } catch (error) {
      chainHead = saved
      if (db.inTransaction) rollback.run()
      throw error
    }
  }
}
const establish = process.argv[4] === "obligations" ? await makeFloor() : undefined
let connections = 0

const P = ed25519.Point.Fp.ORDER
const TORSION_Y = new Set(ED25519_TORSION_SUBGROUP.map((hex) => ed25519.Point.fromHex(hex).y))
const B64U = /^[A-Za-z0-9_-]+$/

/** Strict base64url of exactly `bytes` bytes (unpadded, canonical), else undefined. */
const fixed = (text: unknown, bytes: number): Buffer | undefined => {
  if (typeof text !== "string" || text.length !== Math.ceil((bytes * 4) / 3) || !B64U.test(text)) return undefined
  const decoded = Buffer.from(text, "base64url")
  return decoded.length === bytes && decoded.toString("base64url") === text ? decoded : undefined
}

const importKey = (text: string): KeyObject | undefined => {
  const raw = fixed(text, 32)
  if (raw === undefined) return undefined
  raw[31] = raw[31]! & 0x7f
  const y = BigInt("0x" + Buffer.from(raw).reverse().toString("hex"))
  if (y >= P || TORSION_Y.has(y)) return undefined
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: text }, format: "jwk" })
}

const fail = (ws: WebSocket, code: string, closeCode: number, message: string) => {
  ws.send(JSON.stringify({ type: "handshake.error", code, message }))
  ws.close(closeCode, code)
}

const onConnection = (ws: WebSocket, request: Http.IncomingMessage) => {
  const connection: Connection | undefined = establish === undefined
    ? undefined
    : {
      id: `connection-${++connections}`,
      startedAt: new Date().toISOString(),
      remote: request.socket.remoteAddress ?? null
    }
  let state: "auth" | "response" | "done" = "auth"
  let key: KeyObject | undefined
  let nonce: Buffer | undefined
  let claims: any
  let publicKey = ""
  const timer = setTimeout(
    () => fail(ws, "AUTH_TIMEOUT", 4001, "no handshake.auth within the auth timeout"),
    AUTH_TIMEOUT_MS
  )
  ws.once("close", () => clearTimeout(timer))
  ws.on("error", () => {})
  ws.on("message", (data, isBinary) => {
    if (state === "done") return
    let message: any
    try {
      if (isBinary) throw new Error()
      message = JSON.parse(data.toString())
      if (typeof message !== "object" || message === null) throw new Error()
    } catch {
      state = "done"
      return fail(ws, "INVALID_MESSAGE", 4002, "the frame is not a JSON object")
    }
    if (state === "auth") {
      state = "done"
      if (message.type !== "handshake.auth" || typeof message.patient_public_key !== "string") {
        return fail(ws, "INVALID_MESSAGE", 4002, "expected handshake.auth")
      }
      const signature = fixed(message.consent_token_signature, 64)
      key = importKey(message.patient_public_key)
      const text = message.consent_token_payload
      const payload = typeof text === "string" && B64U.test(text) ? Buffer.from(text, "base64url") : undefined
      if (
        signature === undefined || key === undefined || payload === undefined || payload.toString("base64url") !== text
      ) {
        return fail(ws, "INVALID_MESSAGE", 4002, "malformed consent token")
      }
      if (!verify(null, payload, key, signature)) return fail(ws, "CONSENT_FAILED", 4003, "invalid signature")
      claims = JSON.parse(payload.toString("utf8"))
      const now = Date.now()
      if (
        claims.patient_agent_id !== message.patient_agent_id || claims.exp * 1000 <= now ||
        claims.iat * 1000 > now + 60_000 || (claims.organization_npi !== undefined && claims.organization_npi !== ORG)
      ) {
        return fail(ws, "CONSENT_FAILED", 4003, "consent refused")
      }
      if (claims.provider_npi !== PROVIDER) return fail(ws, "PROVIDER_NOT_FOUND", 4004, "unknown provider")
      publicKey = message.patient_public_key
      nonce = randomBytes(32)
      state = "response"
      ws.send(JSON.stringify({
        type: "handshake.challenge",
        nonce: nonce.toString("hex"),
        provider_npi: PROVIDER,
        organization_npi: ORG,
        expires_at: new Date(now + AUTH_TIMEOUT_MS).toISOString()
      }))
      return
    }
    state = "done"
    clearTimeout(timer)
    const signed = message.type === "handshake.challenge_response" ? fixed(message.signed_nonce, 64) : undefined
    if (signed === undefined) return fail(ws, "INVALID_MESSAGE", 4002, "expected handshake.challenge_response")
    if (!verify(null, nonce!, key!, signed)) return fail(ws, "CONSENT_FAILED", 4003, "challenge failed")
    if (establish !== undefined) {
      const established = establish(claims, publicKey, connection!)
      if (established === undefined) return fail(ws, "CONSENT_FAILED", 4003, "key mismatch")
      ws.send(JSON.stringify({
        type: "handshake.complete",
        relationship_id: established.relationship_id,
        provider_npi: PROVIDER,
        provider_endpoint: `http://127.0.0.1/ws/provider/${PROVIDER}`,
        status: established.status
      }))
      return ws.close(1000, "handshake complete")
    }
    const now = new Date().toISOString()
    const id = randomUUID()
    const actions = JSON.stringify(claims.consented_actions)
    let relationship_id: string = insert.get(id, claims.patient_agent_id, PROVIDER, publicKey, actions, now, now)
      ?.relationship_id
    let status = "new"
    if (relationship_id === undefined) {
      const row = findActive.get(claims.patient_agent_id, PROVIDER)
      if (row.patient_public_key !== publicKey) return fail(ws, "CONSENT_FAILED", 4003, "key mismatch")
      relationship_id = row.relationship_id
      status = "existing"
    }
    ws.send(JSON.stringify({
      type: "handshake.complete",
      relationship_id,
      provider_npi: PROVIDER,
      provider_endpoint: `http://127.0.0.1/ws/provider/${PROVIDER}`,
      status
    }))
    ws.close(1000, "handshake complete")
  })
}

const wss = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload: 65_536, perMessageDeflate: false })
const server = Http.createServer({ headersTimeout: 5_000, requestTimeout: 10_000, connectionsCheckingInterval: 1_000 })
server.on("request", (_req, res) => {
  res.writeHead(426).end()
})
server.on("upgrade", (req, socket, head) => {
  if (req.url !== PATH) {
    socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    return
  }
  wss.handleUpgrade(req, socket, head, onConnection)
})
serve(server, () => db.close())
