// A stand-in for your Next.js frontend: shows whether the backend's Kite session works.
export const dynamic = "force-dynamic";

const BACKEND = process.env.BACKEND_URL || "http://127.0.0.1:8000";

async function backendAuth() {
  try {
    const res = await fetch(`${BACKEND}/api/system/health`, { cache: "no-store" });
    const body = await res.json();
    return body.auth || "UNKNOWN";
  } catch {
    return "BACKEND DOWN";
  }
}

export default async function Page() {
  const auth = await backendAuth();
  const text = auth === "VALID" ? "Connected" : auth === "EXPIRED" ? "Kite token expired" : auth;
  return (
    <main>
      <h1>Trading desk</h1>
      <p>
        Broker session: <strong>{text}</strong>
      </p>
    </main>
  );
}
