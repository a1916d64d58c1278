// POST a body of the given size N times with Node's fetch (the PWA's client); print the answers as JSON.
const [url, size, times, token] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5]];
const body = new Uint8Array(size).fill(120);
const out = [];
for (let i = 0; i < times; i++) {
  try {
    const headers = {"Content-Type": "application/json"};
    if (token) headers["Authorization"] = `Bearer ${token}`;
    const resp = await fetch(url, {method: "POST", body, headers});
    out.push({status: resp.status, requestId: resp.headers.get("x-request-id"), body: await resp.json()});
  } catch (err) {
    out.push({error: String(err), cause: String(err.cause)});
  }
}
console.log(JSON.stringify(out));
