// /whisk.system/samples/wordCountAsync: wordCount as an asynchronous action, for teaching:
// it answers through a promise resolved a tenth of a second later.
function main(params) {
  return new Promise((resolve) => {
    setTimeout(() => {
      const text = params.payload;
      const count = text.split(' ').length;
      console.log("The message '" + text + "' has", count, 'words');
      resolve({ count: count });
    }, 100);
  });
}
