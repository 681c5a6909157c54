// A static script of the parity fixture (its Content-Type differs on purpose: see the README).
console.log('parity');
