/**
 * Helpers for the registry's tests: a tiny HTTP caller over `fetch` (real sockets, any body, any header),
 * valid NPIs on demand, and a registration shortcut.
 */
import * as Effect from "effect/Effect"
import * as Http from "node:http"
import { type Answer, call, npiOf } from "../support/http.js"

/** A valid NPI made from a small number: `npi(1)`, `npi(2)`, ... */
export const npi = (n: number): string => npiOf(n)

export { type Answer, call }

/** A registration body for organization `n`. */
export const registration = (n: number, extra?: Record<string, unknown>) => ({
  organization_npi: npi(n),
  organization_name: `Clinic ${n}`,
  organization_type: "practice",
  neuron_endpoint_url: `https://neuron-${n}.example.org`,
  ...extra
})

/** Registers organization `n` and returns the answer's body (`registration_id`, `bearer_token`, ...). */
export const register = (
  url: string,
  n: number,
  options?: { readonly extra?: Record<string, unknown>; readonly enrollment?: string }
) =>
  Effect.flatMap(
    call(url, "POST", "/v1/neurons", {
      body: registration(n, options?.extra),
      ...(options?.enrollment === undefined ? {} : { token: options.enrollment })
    }),
    (answer) =>
      answer.status === 201 || answer.status === 200
        ? Effect.succeed(
          answer.body as { registration_id: string; bearer_token: string; heartbeat_interval_s: number; ttl_s: number }
        )
        : Effect.dieMessage(`registration failed: ${answer.status} ${answer.text}`)
  )

/** Sends a heartbeat for a registration. */
export const heartbeat = (url: string, id: string, token: string, endpoint = "https://neuron.example.org") =>
  call(url, "PUT", `/v1/neurons/${id}/endpoint`, { token, body: { neuron_endpoint_url: endpoint } })

/**
 * Sends a body in pieces with `Transfer-Encoding: chunked` (no Content-Length), over node:http. Resolves with
 * the answer, or with status 0 when the server cut the connection.
 */
export const callChunked = (
  url: string,
  method: string,
  path: string,
  chunks: ReadonlyArray<string>,
  headers: Record<string, string> = {}
): Effect.Effect<Answer> =>
  Effect.promise(() =>
    new Promise<Answer>((resolve) => {
      const request = Http.request(url + path, {
        method,
        headers: { "content-type": "application/json", ...headers }
      }, (response) => {
        const parts: Array<Buffer> = []
        response.on("data", (part: Buffer) => parts.push(part))
        response.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8")
          let body: unknown = null
          try {
            body = JSON.parse(text)
          } catch {
            body = null
          }
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers["content-type"] ?? "",
            headers: Object.fromEntries(Object.entries(response.headers).map(([k, v]) => [k, String(v)])),
            body,
            text
          })
        })
      })
      request.on("error", () => resolve({ status: 0, contentType: "", headers: {}, body: null, text: "" }))
      const write = (i: number) => {
        if (i === chunks.length) return request.end()
        request.write(chunks[i], () => setTimeout(() => write(i + 1), 1))
      }
      write(0)
    })
  )
