/**
 * National Provider Identifier: 10 ASCII digits, the first 1 or 2, the last the Luhn check digit
 * computed over the prefix `80840` followed by the first nine digits (the CMS rule).
 */
import * as Schema from "effect/Schema"

/** True when `digits` (the first nine NPI digits) followed by `check` passes the CMS Luhn rule. */
const luhnWithPrefix = (npi: string): boolean => {
  // Luhn over "80840" + npi: walk right to left, doubling every second digit starting with the one
  // left of the check digit.
  const full = "80840" + npi
  let sum = 0
  for (let i = full.length - 1, double = false; i >= 0; i--, double = !double) {
    let d = full.charCodeAt(i) - 48
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return sum % 10 === 0
}

/** True for a well-formed NPI with a valid check digit. */
export const isValidNpi = (s: string): boolean => /^[12][0-9]{9}$/.test(s) && luhnWithPrefix(s)

/** A valid NPI, branded so that an unchecked string cannot stand in for one. */
export const Npi = Schema.String.pipe(
  Schema.filter((s) => isValidNpi(s) || "must be a valid NPI: 10 digits, first 1 or 2, CMS Luhn check digit"),
  Schema.brand("Npi"),
  Schema.annotations({
    identifier: "Npi",
    title: "NPI",
    description: "National Provider Identifier: 10 digits, first 1 or 2, CMS Luhn check digit",
    examples: ["1234567893" as any]
  })
)

/** @see Npi */
export type Npi = typeof Npi.Type
