// /whisk.system/samples/curl: fetches the URL `payload` with curl and returns what curl
// printed: the page, or curl's error text when it failed (e.g. the sandbox has no
// network). curl is run without a shell, so the payload is one URL, never a command.
const { spawn } = require('child_process');

function main(params) {
  const host = params.payload;
  console.log('Curl to ' + host);
  return new Promise((resolve) => {
    const child = spawn('curl', ['--connect-timeout', '3', String(host)]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => { stdout += data; });
    child.stderr.on('data', (data) => { stderr += data; });
    child.on('error', (err) => resolve({ msg: String(err) }));
    child.on('close', (code) => {
      const msg = code === 0 ? stdout : stderr;
      console.log(msg);
      resolve({ msg: msg });
    });
  });
}
