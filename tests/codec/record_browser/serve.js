// serve.js PORT OUT — serves page.html and the WAVs of the current directory on 127.0.0.1:PORT,
// writes the recording POSTed to /save to OUT, prints /log's lines and exits at /done.
const fs = require('fs'), http = require('http'), path = require('path');
const [port, out] = process.argv.slice(2);
http.createServer((req, res) => {
  const body = [];
  req.on('data', d => body.push(d));
  req.on('end', () => {
    const p = new URL(req.url, 'http://localhost').pathname;
    if (p === '/page.html')
      res.setHeader('Content-Type', 'text/html');
    if (p === '/page.html' || p.endsWith('.wav'))
      return res.end(fs.readFileSync(p === '/page.html' ? path.join(__dirname, p) :
                                     path.join(process.cwd(), path.basename(p))));
    if (p === '/save')
      fs.writeFileSync(out, Buffer.concat(body));
    if (p === '/log')
      console.log(Buffer.concat(body).toString());
    res.end('ok');
    if (p === '/done')
      setTimeout(() => process.exit(0), 100);
  });
}).listen(+port, '127.0.0.1');
