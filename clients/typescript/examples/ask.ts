// Upload a PDF, poll until it is ready, ask a question and print the citations. Type-checked in CI
// (tests/test_typescript_client.py): a change to the schema that breaks a frontend breaks this file.
import { docground, type ApiError, type Schemas } from "../src/index";

function fail(error: ApiError): never {
  throw new Error(`${error.code}: ${error.message}`);
}

export async function ask(baseUrl: string, apiKey: string, kb: string, pdf: Blob, question: string) {
  const api = docground(baseUrl, apiKey);

  const upload = await api.POST("/v1/knowledge-bases/{kb}/documents", {
    params: { path: { kb } },
    body: { file: "" },
    bodySerializer: () => {
      const form = new FormData();
      form.append("file", pdf, "paper.pdf");
      return form;
    },
  });
  if (upload.error) fail(upload.error);
  const documentId: string = upload.data.document_id;

  let status: Schemas["DocumentStatus"]["status"] = upload.data.status;
  while (status === "queued" || status === "processing") {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const polled = await api.GET("/v1/documents/{document_id}", { params: { path: { document_id: documentId } } });
    if (polled.error) fail(polled.error);
    status = polled.data.status;
  }
  if (status === "failed") throw new Error(`document ${documentId} failed`);

  const answer = await api.POST("/v1/knowledge-bases/{kb}/query", {
    params: { path: { kb } },
    body: { query: question, top_k: 5, mode: "extractive", stream: false },
  });
  if (answer.error) fail(answer.error);
  const citations = answer.data.citations;
  for (const c of citations) {
    const [x0, y0, x1, y1] = c.boxes[0] ?? [0, 0, 0, 0];
    console.log(`[${c.n}] ${c.filename} p.${c.page} (${x0},${y0})-(${x1},${y1}): ${c.quote}`);
  }
  return answer.data.answer;
}
