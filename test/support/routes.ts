/**
 * Which routes a server answers, found by asking it, to hold its OpenAPI document to account: every candidate path
 * (the document's own, those the project's docs mention, and a list of plausible guesses) is called with every
 * method, and a route counts as answered unless the server gives its "no such route" answer. A route at a path
 * nobody wrote down or guessed would escape the probe: the guesses cover the names such a route would have.
 */
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { call } from "./http.js"

/** The methods probed (HEAD and OPTIONS are answered by the platform for any route). */
export const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const

/** `METHOD /path/{param}` for every operation of an OpenAPI document. */
export const documentedRoutes = (doc: { readonly paths: Record<string, Record<string, unknown>> }): Set<string> =>
  new Set(
    Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).filter((m) => METHODS.includes(m.toUpperCase() as any)).map((m) => `${m.toUpperCase()} ${path}`)
    )
  )

/** Paths that the README and the docs/ pages mention (literal ones, such as `/v1/providers/1558598797`, too). */
export const mentionedPaths = (root: string): ReadonlyArray<string> => {
  const files = [
    Path.join(root, "README.md"),
    ...Fs.readdirSync(Path.join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => Path.join(root, "docs", f))
  ]
  const found = new Set<string>()
  for (const file of files) {
    const text = Fs.readFileSync(file, "utf8")
    for (
      const match of text.matchAll(
        /(?<![\w.])(\/(?:v1|health|metrics|docs|openapi|ws|stats|alerts|\.well-known)[\w\-/{}.]*)/g
      )
    ) {
      found.add(match[1]!.replace(/[.)]+$/, ""))
    }
  }
  return [...found]
}

/** Routes that servers like these commonly have, which neither may answer without documenting them. */
export const GUESSES: ReadonlyArray<string> = [
  "/",
  "/health",
  "/healthz",
  "/ready",
  "/metrics",
  "/status",
  "/stats",
  "/alerts",
  "/docs",
  "/swagger",
  "/redoc",
  "/openapi.json",
  "/openapi.yaml",
  "/ws",
  "/ws/handshake",
  "/admin",
  "/v1",
  "/v1/health",
  "/v1/metrics",
  "/v1/status",
  "/v1/providers",
  "/v1/providers/{provider_npi}",
  "/v1/relationships",
  "/v1/relationships/{id}",
  "/v1/relationships/{id}/terminate",
  "/v1/api-keys",
  "/v1/api-keys/{id}",
  "/v1/audit",
  "/v1/config",
  "/v1/neurons",
  "/v1/neurons/{registration_id}",
  "/v1/neurons/{registration_id}/endpoint",
  "/v1/neurons/{registration_id}/providers",
  "/v1/neurons/{registration_id}/providers/{provider_npi}",
  "/v1/registry/{npi}",
  "/v1/registry",
  "/v1/discover",
  "/.well-known/agent.json"
]

const templateRegex = (template: string) =>
  new RegExp("^" + template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}]+\}/g, "[^/]+") + "$")

/**
 * Calls every candidate path with every method and gives `METHOD /template` for those answered: a concrete path is
 * named by the documented template it matches, else by itself. `sample` fills a `{param}`.
 * `notFound` recognizes the server's "no such route" answer.
 */
export const probeRoutes = (options: {
  readonly url: string
  readonly documented: ReadonlySet<string>
  readonly candidates: ReadonlyArray<string>
  readonly sample: (param: string) => string
  readonly headers?: Record<string, string>
  readonly notFound: (answer: { readonly status: number; readonly body: any }) => boolean
}): Effect.Effect<Set<string>> =>
  Effect.gen(function*() {
    const templates = [...new Set([...options.documented].map((r) => r.slice(r.indexOf(" ") + 1)))]
    const nameOf = (path: string) => templates.find((t) => t === path || templateRegex(t).test(path)) ?? path
    const answered = new Set<string>()
    const candidates = new Set([...templates, ...options.candidates])
    for (const candidate of candidates) {
      const path = candidate.replace(/\{([^}]+)\}/g, (_, name: string) => options.sample(name))
      for (const method of METHODS) {
        const answer = yield* call(options.url, method, path, {
          ...(options.headers === undefined ? {} : { headers: options.headers })
        })
        if (!options.notFound(answer)) answered.add(`${method} ${nameOf(candidate.includes("{") ? path : candidate)}`)
      }
    }
    return answered
  })
