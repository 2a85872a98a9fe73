// InvokeEndpoint through the JS SDK v3; prints one JSON line:
// {"body": utf-8 text, "contentType", "variant", "customAttributes", "newSessionId", "closedSessionId",
//  "requestId", "httpStatusCode", "error": null | {...}}
// Usage: node invoke.mjs <endpoint_url> <endpoint_name> <json body> [--input=<json>]
import { InvokeEndpointCommand } from "@aws-sdk/client-sagemaker-runtime";
import { describeError, makeClient, parseArgs, printResult } from "./common.mjs";

const { url, endpointName, body, extraInput } = parseArgs(process.argv.slice(2), "invoke.mjs");
const client = makeClient(url);
const result = {
  body: null,
  contentType: null,
  variant: null,
  customAttributes: null,
  newSessionId: null,
  closedSessionId: null,
  requestId: null,
  httpStatusCode: null,
  error: null,
};

try {
  const response = await client.send(
    new InvokeEndpointCommand({
      EndpointName: endpointName,
      ContentType: "application/json",
      Body: new TextEncoder().encode(body),
      ...extraInput,
    }),
  );
  // The SDK hands an empty payload over as a null Body.
  result.body = new TextDecoder("utf-8").decode(response.Body ?? new Uint8Array());
  result.contentType = response.ContentType ?? null;
  result.variant = response.InvokedProductionVariant ?? null;
  result.customAttributes = response.CustomAttributes ?? null;
  result.newSessionId = response.NewSessionId ?? null;
  result.closedSessionId = response.ClosedSessionId ?? null;
  result.requestId = response.$metadata?.requestId ?? null;
  result.httpStatusCode = response.$metadata?.httpStatusCode ?? null;
} catch (error) {
  result.error = describeError(error, "send");
}

client.destroy();
printResult(result);
