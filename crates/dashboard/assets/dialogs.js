// The two modal dialogs of index.html: confirming a destructive action and asking for the
// token. Native <dialog>: focus is trapped and Escape cancels, with no code of ours.

function open(dialog) {
  return new Promise((resolve) => {
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

export function confirmAction(text, action) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = action;
  return open(dialog);
}

export async function askToken() {
  const dialog = document.getElementById('token');
  const input = document.getElementById('token-input');
  input.value = '';
  const ok = await open(dialog);
  return ok ? input.value.trim() : null;
}
