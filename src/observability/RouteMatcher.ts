/**
 * Names a request by the route it matched, for metric labels: the `HttpApi` endpoint's path template in the
 * OpenAPI form (`/v1/providers/{provider_npi}`), or the path itself for the routes documented beside the API
 * (`/metrics`, `/docs`, ...); `unmatched` for anything else, so that a scan of random paths cannot grow the labels.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as OpenApi from "@effect/platform/OpenApi"

/** A function from method and path to the route's name. */
export const routeMatcher = (api: HttpApi.HttpApi.Any): (method: string, path: string) => string => {
  const exact = new Map<string, string>()
  const patterns: Array<{ readonly method: string; readonly regex: RegExp; readonly name: string }> = []
  for (const [template, item] of Object.entries(OpenApi.fromApi(api as any).paths)) {
    for (const method of Object.keys(item as object)) {
      const upper = method.toUpperCase()
      if (!template.includes("{")) {
        exact.set(`${upper} ${template}`, template)
        continue
      }
      const source = template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}]+\}/g, "[^/]+")
      patterns.push({ method: upper, regex: new RegExp(`^${source}$`), name: template })
    }
  }
  return (method, path) =>
    exact.get(`${method} ${path}`) ??
      patterns.find((p) => p.method === method && p.regex.test(path))?.name ??
      "unmatched"
}
