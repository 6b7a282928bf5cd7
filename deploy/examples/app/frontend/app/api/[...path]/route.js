// Every /api/* request of the page goes to the backend, at BACKEND_URL read at run time (a
// `rewrites()` in next.config.mjs would be fixed at build time). The browser only ever talks
// to this server: no CORS, and the backend can stay on loopback.
export const dynamic = "force-dynamic";

const BACKEND = (process.env.BACKEND_URL || "http://127.0.0.1:8000").replace(/\/$/, "");

async function proxy(request, { params }) {
  const url = `${BACKEND}/api/${params.path.join("/")}${new URL(request.url).search}`;
  try {
    const res = await fetch(url, { cache: "no-store", signal: AbortSignal.timeout(3000) });
    const body = await res.text();
    return new Response(body, {
      status: res.status,
      headers: { "content-type": res.headers.get("content-type") || "application/json" },
    });
  } catch {
    return Response.json({ status: "error", error: "backend unreachable" }, { status: 502 });
  }
}

export const GET = proxy;
