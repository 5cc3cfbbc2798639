// Images for a message, from the camera or the phone's files: each one drawn onto a canvas no larger than
// MAX_SIDE on its longest side (what models read anyway), kept PNG when it was (screenshots stay sharp, unless that
// is large) and JPEG otherwise, then sent as {filename, mime, data_base64}. Thumbnails show what goes, each with a
// Remove button; the total stays under the server's limit (GET /admin/agent-options: attachments_max_bytes).

import { bytes, errorBox, h, put } from '../ui.js';

const MAX_SIDE = 1568;
const LARGE_PNG = 1_500_000; // bytes: a photo saved as PNG; JPEG is far smaller
const JPEG_QUALITY = 0.85;

const blobOf = (canvas, type, quality) => new Promise((resolve) => canvas.toBlob(resolve, type, quality));

function base64Of(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(',', 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** A picked file as an attachment, resized on the phone; throws a sentence when it is not an image it can read. */
export async function shrink(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    throw new Error(`${file.name} could not be read as an image.`);
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = h('canvas', { width: Math.round(bitmap.width * scale), height: Math.round(bitmap.height * scale) });
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  let blob = file.type === 'image/png' ? await blobOf(canvas, 'image/png') : null;
  if (!blob || blob.size > LARGE_PNG) blob = await blobOf(canvas, 'image/jpeg', JPEG_QUALITY);
  const filename = blob.type === 'image/png' ? file.name : file.name.replace(/\.[^.]*$/, '') + '.jpg';
  return { filename, mime: blob.type, data_base64: await base64Of(blob), size: blob.size };
}

/** imageAttacher(id, limits) → {node, button, images(), clear()}; `limits.maxBytes()` is the server's total
 * limit (undefined until known), `limits.allowed()` false when the chosen model takes no images. */
export function imageAttacher(id, limits) {
  const input = h('input', { id, type: 'file', accept: 'image/*', multiple: true, class: 'visually-hidden' });
  const button = h('label', { for: id, class: 'button attach', title: 'Attach images' }, 'Image');
  const list = h('ul', { class: 'thumbs', 'aria-label': 'Images to send' });
  const note = h('div', { 'aria-live': 'polite' });
  const node = h('div', { class: 'attachments' }, input, list, note);
  let attached = [];

  function show() {
    put(list, attached.map((image, i) => h(
      'li',
      {},
      h('img', { src: `data:${image.mime};base64,${image.data_base64}`, alt: image.filename }),
      h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${image.filename}`, onclick: () => {
        attached.splice(i, 1);
        show();
      } }, 'Remove'),
    )));
  }

  input.addEventListener('change', async () => {
    put(note);
    const files = [...input.files];
    input.value = '';
    if (!limits.allowed()) {
      put(note, errorBox(new Error('The chosen model does not take images; choose one that does.')));
      return;
    }
    for (const file of files) {
      try {
        const image = await shrink(file);
        const total = attached.reduce((sum, a) => sum + a.size, image.size);
        const max = limits.maxBytes();
        if (max && total > max) throw new Error(`${file.name} would take the images over ${bytes(max)}, the most one message takes.`);
        attached.push(image);
        show();
      } catch (error) {
        put(note, errorBox(error));
      }
    }
  });

  return {
    node,
    button,
    images: () => attached.map(({ filename, mime, data_base64 }) => ({ filename, mime, data_base64 })),
    clear() {
      attached = [];
      show();
      put(note);
    },
  };
}

/** An image part of a message (opencode keeps it as a data URL) as a thumbnail; null for other files. */
export function imageThumb(part) {
  if (!/^data:image\/(png|jpeg|webp|gif);base64,/.test(part.url || '')) return null;
  return h('img', { class: 'part thumb', src: part.url, alt: part.filename || 'image', 'data-part': part.id });
}
