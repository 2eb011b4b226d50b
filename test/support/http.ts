/**
 * A small HTTP caller for tests over real sockets (`fetch`): any method, body and header, with the answer's
 * status, content type, parsed JSON body (or `null`) and raw text. And valid NPIs on demand.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Http from "node:http"
import * as Net from "node:net"
import { type Npi, withCheckDigit } from "../../src/domain/Npi.js"

/** A valid NPI made from a small number: `npiOf(1)`, `npiOf(2)`, ... (all start with 1). */
export const npiOf = (n: number): Npi => withCheckDigit("1" + String(n).padStart(8, "0")) as Npi

/** An HTTP answer. */
export interface Answer {
  readonly status: number
  readonly contentType: string
  /** Every response header, by lower-case name. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: any
  readonly text: string
}

/**
 * Calls `url + path`. `body` is sent as JSON, `raw` as it is; either is labelled `application/json` unless
 * `headers` says otherwise. `token` becomes a bearer header.
 */
export const call = (
  url: string,
  method: string,
  path: string,
  options?: {
    readonly body?: unknown
    readonly raw?: string
    readonly token?: string
    readonly headers?: Record<string, string>
  }
): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const headers: Record<string, string> = { ...options?.headers }
    if (options?.token !== undefined) headers.authorization = `Bearer ${options.token}`
    const body = options?.raw ?? (options?.body === undefined ? undefined : JSON.stringify(options.body))
    if (body !== undefined && headers["content-type"] === undefined) headers["content-type"] = "application/json"
    const response = await fetch(url + path, { method, headers, ...(body === undefined ? {} : { body }) })
    const text = await response.text()
    let parsed: unknown = null
    try {
      parsed = text === "" ? null : JSON.parse(text)
    } catch {
      parsed = null
    }
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      headers: Object.fromEntries(response.headers.entries()),
      body: parsed,
      text
    }
  })

/** A port on 127.0.0.1 where nothing listens now (it was just free; a test may start something on it). */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * Listens with `server` on 127.0.0.1, port 0, for the length of the current scope (open connections are closed
 * with it), and gives its base URL.
 */
export const listenScoped = (server: Http.Server): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<string>((resume) =>
      void server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed(`http://127.0.0.1:${(server.address() as Net.AddressInfo).port}`)))
    ),
    () =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() =>
          resume(Effect.void)
        )
      })
  )
