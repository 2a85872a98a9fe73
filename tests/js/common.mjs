// Shared by the CLI scripts: a SageMaker runtime client aimed at sagehost, and how results print.
// Each script writes exactly one JSON line to stdout, so the Python tests can assert on it.
import { SageMakerRuntimeClient } from "@aws-sdk/client-sagemaker-runtime";

export const USAGE_EXIT = 2;

// argv after the script: <endpoint_url> <endpoint_name> <json body> [--input=<json>] [--touch-on-first-part=<path>]
// --input merges extra fields (Accept, CustomAttributes, ...) into the command input.
export function parseArgs(argv, script) {
  const positional = argv.filter((arg) => !arg.startsWith("--"));
  const flags = Object.fromEntries(
    argv
      .filter((arg) => arg.startsWith("--"))
      .map((arg) => {
        const at = arg.indexOf("=");
        return at < 0 ? [arg.slice(2), "true"] : [arg.slice(2, at), arg.slice(at + 1)];
      }),
  );
  if (positional.length !== 3) {
    process.stderr.write(
      `usage: node ${script} <endpoint_url> <endpoint_name> <json body> [--input=<json>]\n`,
    );
    process.exit(USAGE_EXIT);
  }
  const [url, endpointName, body] = positional;
  return { url, endpointName, body, extraInput: JSON.parse(flags.input ?? "{}"), flags };
}

export function makeClient(url) {
  return new SageMakerRuntimeClient({
    endpoint: url,
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    maxAttempts: 1,
  });
}

// The fields an SDK error carries, with `during` saying whether send() or the stream threw it.
export function describeError(error, during) {
  const pick = (value) => (value === undefined ? null : value);
  return {
    during,
    name: pick(error?.name),
    message: pick(error?.message),
    Message: pick(error?.Message),
    ErrorCode: pick(error?.ErrorCode),
    OriginalStatusCode: pick(error?.OriginalStatusCode),
    OriginalMessage: pick(error?.OriginalMessage),
    LogStreamArn: pick(error?.LogStreamArn),
    fault: pick(error?.$fault),
    httpStatusCode: pick(error?.$metadata?.httpStatusCode),
    requestId: pick(error?.$metadata?.requestId),
  };
}

export function printResult(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}
