// Reads a JSON array of simulations on stdin, writes one result per simulation on stdout:
// {"result": "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied"} or {"error": "..."}.
// Each simulation uses iam-simulate's own input shape (request, identityPolicies,
// sessionPolicy, resourcePolicy...), so nothing here interprets a policy.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const simulations = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const results = []
for (const simulation of simulations) {
  try {
    const response = await runSimulation(
      { serviceControlPolicies: [], resourceControlPolicies: [], ...simulation },
      {}
    )
    if (response.resultType === 'error') {
      results.push({ error: JSON.stringify(response.errors) })
    } else {
      results.push({ result: response.overallResult })
    }
  } catch (e) {
    results.push({ error: String(e) })
  }
}
process.stdout.write(JSON.stringify(results))
