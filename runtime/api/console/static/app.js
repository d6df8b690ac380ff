// segscale web console: plain JavaScript, no build step, no third-party code.
//
// Safety rules this file keeps (the page's Content-Security-Policy enforces the first two):
// - no inline script, no eval, no HTML from strings: every piece of text, a file name or a problem body included,
//   reaches the page through textContent or a text node (Trusted Types make innerHTML throw);
// - the API key lives in sessionStorage (this tab only) and is sent only in the X-Api-Key header of requests to
//   this origin; requests never follow redirects, so the key cannot travel on to S3 or anywhere else;
// - uploads and result images go to S3 through presigned URLs, which carry their own signature and no key.
"use strict";

(() => {
  const KEY_STORAGE = "segscale.apiKey";
  // Files above this size take the presigned flow (POST straight to S3), whatever the API's mode; in Lambda mode the
  // API's own request cap (GET /v1/limits) lowers it further.
  const LARGE_FILE_BYTES = 8 * 1024 * 1024;
  const MULTIPART_OVERHEAD_BYTES = 16 * 1024;
  const UPLOAD_CONCURRENCY = 4;
  const LINK_CONCURRENCY = 4;
  const POLL_MS = 1500;
  const ATTEMPTS = 4;
  const TERMINAL = new Set(["SUCCEEDED", "FAILED"]);
  const RETRYABLE = new Set([0, 408, 429, 500, 502, 503, 504]);
  // What a folder contributes (the CLI's rule); files chosen one by one are all sent and the API judges them.
  const IMAGE_NAME = /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i;

  const $ = (id) => document.getElementById(id);
  const ui = {
    keyForm: $("key-form"),
    keyInput: $("api-key"),
    keyStatus: $("key-status"),
    forgetKey: $("forget-key"),
    uploadSection: $("upload-section"),
    model: $("model"),
    mmPerPixel: $("mm-per-pixel"),
    dropZone: $("drop-zone"),
    fileInput: $("file-input"),
    folderInput: $("folder-input"),
    limits: $("limits"),
    fileList: $("file-list"),
    batchSection: $("batch-section"),
    batchId: $("batch-id"),
    batchProgress: $("batch-progress"),
    batchCounts: $("batch-counts"),
    downloadCsv: $("download-csv"),
    openReport: $("open-report"),
    reportLink: $("report-link"),
    newBatch: $("new-batch"),
    exportStatus: $("export-status"),
    gallery: $("gallery"),
    dialog: $("job-dialog"),
    jobTitle: $("job-title"),
    jobClose: $("job-close"),
    jobImage: $("job-image"),
    jobImageCaption: $("job-image-caption"),
    jobDownload: $("job-download"),
    jobMeasurements: document.querySelector("#job-measurements tbody"),
    jobFacts: $("job-facts"),
  };

  const state = {
    key: "",
    limits: null,
    batchId: null,
    items: [], // one per file the user gave, in order
    byJob: new Map(), // job id -> item
    cards: new Map(), // job id -> gallery card
    jobs: new Map(), // job id -> last JobView seen
    links: new Map(), // "job/kind" -> {url, content_type, expiresAt}
    directQueue: [],
    directActive: 0,
    presignChain: Promise.resolve(),
    uploading: 0,
    polling: false,
    openJob: null,
  };

  // --- small helpers --------------------------------------------------------------------------------------------
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes); // works on plain-HTTP origins too, unlike crypto.randomUUID
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function formatPercent(fraction) {
    return `${(fraction * 100).toFixed(fraction < 0.001 && fraction > 0 ? 3 : 1)} %`;
  }

  function formatNumber(value, digits = 2) {
    if (value === null || value === undefined) return "–";
    return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
  }

  function setStatus(node, text, isError = false) {
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  // --- talking to the API ---------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, problem) {
      super(ApiError.describe(status, problem));
      this.status = status;
      this.problem = problem;
    }

    // The reason a person should read: a file's own reason when the problem lists files, else the detail.
    static describe(status, problem) {
      if (!problem) return status ? `the API answered HTTP ${status}` : "the API could not be reached";
      const file = Array.isArray(problem.errors) && problem.errors.length ? problem.errors[0] : null;
      const title = problem.title || `HTTP ${status}`;
      return `${title}: ${file ? file.detail : problem.detail || "no detail"}`;
    }
  }

  function parseProblem(text) {
    try {
      const body = JSON.parse(text);
      return body && typeof body === "object" ? body : null;
    } catch {
      return null;
    }
  }

  function retryDelay(attempt, retryAfter) {
    const seconds = Number(retryAfter);
    if (Number.isFinite(seconds) && seconds > 0) return Math.min(seconds, 30) * 1000;
    return 500 * 2 ** attempt;
  }

  async function api(path, { method = "GET", headers = {}, body, accept = "application/json" } = {}) {
    let response;
    try {
      response = await fetch(path, {
        method,
        body,
        headers: { "X-Api-Key": state.key, Accept: accept, ...headers },
        credentials: "omit",
        cache: "no-store",
        redirect: "error",
      });
    } catch {
      throw new ApiError(0, null);
    }
    if (!response.ok) throw new ApiError(response.status, parseProblem(await response.text()));
    return response;
  }

  const apiJson = async (path, options) => (await api(path, options)).json();

  // XMLHttpRequest, not fetch: only XHR reports upload progress.
  function send({ method, url, headers, body, onProgress }) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      };
      xhr.onload = () =>
        resolve({ status: xhr.status, text: xhr.responseText, retryAfter: xhr.getResponseHeader("Retry-After") });
      xhr.onerror = () => resolve({ status: 0, text: "", retryAfter: null });
      xhr.send(body);
    });
  }

  // Send until a final answer: retries keep the same Idempotency-Key, so a lost answer never makes a second job.
  async function sendWithRetries(request, item) {
    for (let attempt = 0; ; attempt += 1) {
      const answer = await send(request);
      if (!RETRYABLE.has(answer.status) || attempt + 1 >= ATTEMPTS) return answer;
      setItemState(item, `retrying (${answer.status ? `HTTP ${answer.status}` : "network error"})`);
      await sleep(retryDelay(attempt, answer.retryAfter));
    }
  }

  // --- the key ------------------------------------------------------------------------------------------------
  async function useKey(key) {
    state.key = key;
    setStatus(ui.keyStatus, "Checking the key…");
    try {
      const [limits, models] = await Promise.all([apiJson("v1/limits"), apiJson("v1/models")]);
      sessionStorage.setItem(KEY_STORAGE, key);
      state.limits = limits;
      showModels(models);
      showLimits(limits);
      ui.keyInput.value = "";
      ui.keyInput.required = false;
      ui.forgetKey.hidden = false;
      ui.uploadSection.hidden = false;
      setStatus(ui.keyStatus, "Key accepted. It stays in this tab until you close it or forget it.");
    } catch (err) {
      state.key = "";
      sessionStorage.removeItem(KEY_STORAGE);
      setStatus(ui.keyStatus, `The key was not accepted. ${err.message}`, true);
    }
  }

  function forgetKey() {
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = "";
    ui.forgetKey.hidden = true;
    ui.uploadSection.hidden = true;
    ui.keyInput.required = true;
    setStatus(ui.keyStatus, "The key is forgotten. Enter it again to go on.");
    ui.keyInput.focus();
  }

  function showModels(view) {
    ui.model.replaceChildren();
    for (const card of view.models) {
      const classes = (card.classes || []).map((c) => c.name).join(", ");
      const label = `${card.name}${card.title ? ` – ${card.title}` : ""}${classes ? ` (${classes})` : ""}`;
      const option = el("option", { value: card.name, text: label });
      option.selected = card.name === view.default;
      ui.model.append(option);
    }
  }

  function showLimits(limits) {
    const cap = limits.max_request_body_bytes;
    ui.limits.textContent =
      `Up to ${formatBytes(limits.max_upload_bytes)} and ${formatNumber(limits.max_pixels, 0)} pixels per image; ` +
      `JPEG, PNG, WebP, BMP, TIFF or GIF. Files over ${formatBytes(directLimit())} go straight to storage ` +
      `(presigned upload)${cap ? "; this API runs on Lambda, which caps a request" : ""}.`;
    ui.fileInput.accept = limits.content_types.join(",");
  }

  function directLimit() {
    const cap = state.limits && state.limits.max_request_body_bytes;
    return Math.max(0, Math.min(LARGE_FILE_BYTES, cap ? cap - MULTIPART_OVERHEAD_BYTES : Infinity));
  }

  // --- files in -----------------------------------------------------------------------------------------------
  function isHiddenPath(path) {
    return path.split("/").some((part) => part.startsWith("."));
  }

  function readEntries(reader) {
    return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
  }

  async function walk(entry, inFolder, out) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, inFolder, path: entry.fullPath || file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
        for (const child of batch) await walk(child, true, out);
      }
    }
  }

  async function filesFromDrop(dataTransfer) {
    // Entries must be taken before the first await: the drop's data is gone once the handler returns.
    const entries = Array.from(dataTransfer.items || [])
      .filter((item) => item.kind === "file" && item.webkitGetAsEntry)
      .map((item) => item.webkitGetAsEntry())
      .filter(Boolean);
    if (!entries.length) return Array.from(dataTransfer.files || [], (file) => ({ file, inFolder: false }));
    const out = [];
    for (const entry of entries) await walk(entry, false, out);
    return out;
  }

  function addFiles(picked) {
    if (!state.key) return;
    const isImage = (p) => IMAGE_NAME.test(p.file.name) && !isHiddenPath(p.path || "");
    const chosen = picked.filter((p) => !p.inFolder || isImage(p));
    const skipped = picked.length - chosen.length;
    if (!chosen.length) {
      setStatus(ui.exportStatus, skipped ? `No images among the ${skipped} files given.` : "");
      return;
    }
    if (!state.batchId) startBatch();
    if (skipped) {
      setStatus(ui.exportStatus, `${skipped} file(s) of the folder skipped: not images by their names, or hidden.`);
    }
    for (const { file } of chosen) {
      const item = newItem(file);
      const refusal = localRefusal(file);
      if (refusal) {
        reject(item, refusal);
        continue;
      }
      if (file.size + MULTIPART_OVERHEAD_BYTES > directLimit()) {
        item.method = "presigned";
        item.li.dataset.method = "presigned";
        state.uploading += 1;
        state.presignChain = state.presignChain.then(() => upload(item, uploadPresigned));
      } else {
        item.method = "direct";
        item.li.dataset.method = "direct";
        state.uploading += 1;
        state.directQueue.push(item);
      }
    }
    pumpDirect();
  }

  // The API's limits, checked before a byte is sent; the API checks them again, and everything else (the format,
  // the pixels) only it can judge.
  function localRefusal(file) {
    const max = state.limits.max_upload_bytes;
    if (file.size > max) {
      return `Content too large: ${formatBytes(file.size)} is over the API's limit of ${formatBytes(max)} per file`;
    }
    return null;
  }

  function newItem(file) {
    const item = { file, name: file.name, jobId: null, method: null };
    item.stateNode = el("span", { class: "state", text: "waiting" });
    item.progress = el("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}` });
    item.reason = el("p", { class: "reason" });
    item.reason.hidden = true;
    item.li = el("li", { class: "file" }, el("span", { class: "name", text: file.name }), item.stateNode);
    item.li.append(item.progress, item.reason);
    state.items.push(item);
    ui.fileList.append(item.li);
    return item;
  }

  function setItemState(item, text) {
    item.stateNode.textContent = text;
  }

  function reject(item, reason) {
    item.li.classList.add("rejected");
    item.progress.hidden = true;
    setItemState(item, "rejected");
    item.reason.textContent = reason;
    item.reason.hidden = false;
  }

  function accepted(item, jobId) {
    item.jobId = jobId;
    item.progress.value = 1;
    item.progress.hidden = true;
    state.byJob.set(jobId, item);
    setItemState(item, "uploaded, queued");
    pollBatch();
  }

  function progress(item, fraction) {
    item.progress.value = fraction;
    setItemState(item, `uploading ${Math.round(fraction * 100)} %`);
  }

  function pumpDirect() {
    while (state.directActive < UPLOAD_CONCURRENCY && state.directQueue.length) {
      const item = state.directQueue.shift();
      state.directActive += 1;
      upload(item, uploadDirect).finally(() => {
        state.directActive -= 1;
        pumpDirect();
      });
    }
  }

  async function upload(item, how) {
    try {
      await how(item);
    } catch (err) {
      reject(item, err.message);
    } finally {
      state.uploading -= 1;
      updateButtons();
      pollBatch();
    }
  }

  function uploadOptions() {
    const options = { model: ui.model.value || null, mm_per_pixel: null };
    const mm = ui.mmPerPixel.value.trim();
    if (mm) options.mm_per_pixel = mm;
    return options;
  }

  function problemFromAnswer(answer) {
    return new ApiError(answer.status, parseProblem(answer.text));
  }

  // One file per request: the API refuses a whole request for one bad file, so one request each keeps every
  // other file safe and gives each its own progress and its own reason.
  async function uploadDirect(item) {
    const { model, mm_per_pixel: mm } = uploadOptions();
    const form = new FormData();
    form.append("file", item.file, item.file.name);
    form.append("batch_id", state.batchId);
    if (model) form.append("model", model);
    if (mm) form.append("mm_per_pixel", mm);
    const headers = { "X-Api-Key": state.key, "Idempotency-Key": newId(), Accept: "application/json" };
    const answer = await sendWithRetries(
      { method: "POST", url: "v1/images", headers, body: form, onProgress: (f) => progress(item, f) },
      item,
    );
    if (answer.status !== 202) throw problemFromAnswer(answer);
    accepted(item, JSON.parse(answer.text).jobs[0].job_id);
  }

  // Large files: ask for a presigned POST, send the file to S3 (no API key goes there), then submit. One at a time,
  // so a submit (which checks every file of the batch still awaiting its upload) only ever waits for its own file.
  async function uploadPresigned(item) {
    const { model, mm_per_pixel: mm } = uploadOptions();
    const request = { files: [{ file_name: item.file.name, size_bytes: item.file.size }], batch_id: state.batchId };
    if (model) request.model = model;
    if (mm) request.mm_per_pixel = Number(mm);
    setItemState(item, "asking for an upload URL");
    const created = await apiJson("v1/uploads", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const job = created.jobs[0];
    // A presigned POST: the signed policy's fields, then the file as the last field (S3 ignores fields after it).
    const form = new FormData();
    for (const [name, value] of Object.entries(job.fields)) form.append(name, value);
    form.append("file", item.file);
    const put = await sendWithRetries(
      { method: job.method, url: job.upload_url, headers: {}, body: form, onProgress: (f) => progress(item, f) },
      item,
    );
    if (put.status < 200 || put.status >= 300) {
      throw new Error(`Storage refused the upload (HTTP ${put.status || "network error"})`);
    }
    setItemState(item, "checking");
    await apiJson(created.submit_url.replace(/^\//, ""), { method: "POST" });
    accepted(item, job.job_id);
  }

  // --- the batch ----------------------------------------------------------------------------------------------
  function startBatch() {
    state.batchId = newId();
    state.items = [];
    state.byJob.clear();
    state.cards.clear();
    state.jobs.clear();
    state.links.clear();
    ui.fileList.replaceChildren();
    ui.gallery.replaceChildren();
    ui.batchId.textContent = state.batchId;
    ui.batchProgress.value = 0;
    ui.batchProgress.max = 1;
    ui.reportLink.hidden = true;
    setStatus(ui.batchCounts, "Uploading…");
    setStatus(ui.exportStatus, "");
    ui.batchSection.hidden = false;
    updateButtons();
  }

  function updateButtons() {
    const hasJobs = state.byJob.size > 0;
    ui.downloadCsv.disabled = !hasJobs;
    ui.openReport.disabled = !hasJobs;
    ui.newBatch.disabled = state.uploading > 0;
  }

  async function readBatch(batchId) {
    const jobs = [];
    let cursor = null;
    let page;
    do {
      const query = `limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      page = await apiJson(`v1/batches/${batchId}?${query}`);
      jobs.push(...page.jobs);
      cursor = page.next_cursor;
    } while (cursor);
    return { total: page.total, counts: page.counts, jobs };
  }

  async function pollBatch() {
    if (state.polling || !state.byJob.size) return;
    state.polling = true;
    let failures = 0;
    try {
      for (;;) {
        const batchId = state.batchId;
        if (!batchId || !state.byJob.size) return; // "Start a new batch" was pressed
        let view;
        try {
          view = await readBatch(batchId);
          failures = 0;
        } catch (err) {
          if (err.status === 401) {
            setStatus(ui.batchCounts, `Progress stopped: ${err.message}`, true);
            return;
          }
          failures += 1;
          setStatus(ui.batchCounts, `Could not read the batch (${err.message}); trying again.`, true);
          await sleep(Math.min(POLL_MS * 2 ** failures, 30000));
          continue;
        }
        if (batchId !== state.batchId) continue; // a new batch was started meanwhile
        showBatch(view);
        const finished = (view.counts.SUCCEEDED || 0) + (view.counts.FAILED || 0);
        if (finished === view.total && state.uploading === 0) return;
        await sleep(POLL_MS);
      }
    } finally {
      state.polling = false;
    }
  }

  function showBatch(view) {
    const c = view.counts;
    const succeeded = c.SUCCEEDED || 0;
    const failed = c.FAILED || 0;
    const waiting = (c.QUEUED || 0) + (c.AWAITING_UPLOAD || 0);
    ui.batchProgress.max = Math.max(view.total, 1);
    ui.batchProgress.value = succeeded + failed;
    setStatus(
      ui.batchCounts,
      `${succeeded + failed} of ${view.total} finished: ${succeeded} succeeded, ${failed} failed, ` +
        `${c.RUNNING || 0} running, ${waiting} waiting.`,
    );
    for (const job of view.jobs) {
      state.jobs.set(job.job_id, job);
      showCard(job);
      const item = state.byJob.get(job.job_id);
      if (item && !item.li.classList.contains("rejected")) {
        setItemState(item, job.status === "FAILED" ? `failed: ${job.error || "no reason given"}` : job.status);
        item.li.classList.toggle("done", job.status === "SUCCEEDED");
      }
    }
    updateButtons();
  }

  function measureSummary(result) {
    const lines = [];
    for (const [name, m] of Object.entries((result && result.classes) || {})) {
      const hasArea = m.area_mm2 !== undefined && m.area_mm2 !== null;
      const size = hasArea ? `${formatNumber(m.area_mm2)} mm²` : `${formatNumber(m.pixels, 0)} px`;
      lines.push(`${name}: ${formatPercent(m.fraction || 0)} · ${size}`);
    }
    return lines;
  }

  function showCard(job) {
    let card = state.cards.get(job.job_id);
    if (!card) {
      card = { thumb: el("span", { class: "thumb", text: "waiting" }), caption: el("span", { class: "caption" }) };
      const props = { type: "button", class: "card", "data-job-id": job.job_id };
      card.button = el("button", props, card.thumb, card.caption);
      card.button.addEventListener("click", () => openJob(job.job_id));
      card.li = el("li", {}, card.button);
      ui.gallery.append(card.li);
      state.cards.set(job.job_id, card);
    }
    if (card.status === job.status) return;
    card.status = job.status;
    card.button.dataset.status = job.status;
    card.button.classList.toggle("failed", job.status === "FAILED");
    card.button.setAttribute("aria-label", `${job.file_name}, ${job.status}: open the job`);
    const parts = [el("span", { class: "name", text: job.file_name })];
    if (job.status === "SUCCEEDED") {
      for (const line of measureSummary(job.result)) parts.push(el("span", { class: "measure", text: line }));
    } else if (job.status === "FAILED") {
      parts.push(el("span", { class: "error", text: job.error || "failed" }));
    } else {
      parts.push(el("span", { class: "measure", text: job.status.toLowerCase().replace("_", " ") }));
    }
    card.caption.replaceChildren(...parts);
    if (job.status === "SUCCEEDED" && job.overlay_url) {
      card.thumb.textContent = "loading…";
      queueLink(job.job_id, "overlay", (link) => {
        const img = el("img", { alt: `Overlay of ${job.file_name}`, src: link.url });
        card.thumb.replaceChildren(img);
      });
    } else if (TERMINAL.has(job.status)) {
      card.thumb.textContent = job.status === "FAILED" ? "failed" : "no overlay";
    } else {
      card.thumb.textContent = job.status.toLowerCase().replace("_", " ");
    }
  }

  // Presigned image links, a few at a time, reused until shortly before they expire.
  const linkQueue = [];
  let linkActive = 0;

  async function resultLink(jobId, kind) {
    const cacheKey = `${jobId}/${kind}`;
    const cached = state.links.get(cacheKey);
    if (cached && cached.expiresAt > Date.now() + 30000) return cached;
    const link = await apiJson(`v1/jobs/${jobId}/${kind}`);
    link.expiresAt = Date.now() + link.expires_in_s * 1000;
    state.links.set(cacheKey, link);
    return link;
  }

  function queueLink(jobId, kind, use) {
    linkQueue.push({ jobId, kind, use });
    pumpLinks();
  }

  function pumpLinks() {
    while (linkActive < LINK_CONCURRENCY && linkQueue.length) {
      const { jobId, kind, use } = linkQueue.shift();
      linkActive += 1;
      resultLink(jobId, kind)
        .then(use, (err) => {
          const card = state.cards.get(jobId);
          if (card) card.thumb.textContent = `no image: ${err.message}`;
        })
        .finally(() => {
          linkActive -= 1;
          pumpLinks();
        });
    }
  }

  // --- one job ------------------------------------------------------------------------------------------------
  async function openJob(jobId) {
    let job = state.jobs.get(jobId);
    try {
      job = await apiJson(`v1/jobs/${jobId}`);
      state.jobs.set(jobId, job);
    } catch (err) {
      if (!job) {
        setStatus(ui.exportStatus, `Could not open the job: ${err.message}`, true);
        return;
      }
    }
    state.openJob = job;
    ui.jobTitle.textContent = job.file_name;
    showMeasurements(job);
    showFacts(job);
    document.querySelector('input[name="job-view"][value="overlay"]').checked = true;
    if (!ui.dialog.open) ui.dialog.showModal();
    await showJobImage(job, "overlay");
  }

  async function showJobImage(job, kind) {
    ui.jobImage.removeAttribute("src");
    ui.jobImage.alt = "";
    ui.jobDownload.hidden = true;
    if (!job[`${kind}_url`]) {
      ui.jobImageCaption.textContent = `No ${kind}: the job is ${job.status}.`;
      return;
    }
    ui.jobImageCaption.textContent = `Loading the ${kind}…`;
    try {
      const link = await resultLink(job.job_id, kind);
      if (state.openJob !== job) return;
      ui.jobImage.src = link.url;
      ui.jobImage.alt = `${kind === "mask" ? "Mask" : "Overlay"} of ${job.file_name}`;
      ui.jobImage.dataset.kind = kind;
      ui.jobImageCaption.textContent =
        kind === "mask"
          ? `Mask (${link.content_type || "image"}): each class in its colour, the rest black.`
          : `Overlay (${link.content_type || "image"}): the photo with each class tinted.`;
      ui.jobDownload.href = link.url;
      ui.jobDownload.textContent = `Open the ${kind} at full size`;
      ui.jobDownload.hidden = false;
    } catch (err) {
      ui.jobImageCaption.textContent = `No ${kind}: ${err.message}`;
    }
  }

  function showMeasurements(job) {
    const rows = [];
    for (const [name, m] of Object.entries((job.result && job.result.classes) || {})) {
      rows.push(
        el(
          "tr",
          {},
          el("th", { scope: "row", text: name }),
          el("td", { text: formatPercent(m.fraction || 0) }),
          el("td", { text: formatNumber(m.area_mm2) }),
          el("td", { text: formatNumber(m.pixels, 0) }),
          el("td", { text: formatNumber(m.components, 0) }),
          el("td", { text: formatNumber(m.largest_component_pixels, 0) }),
        ),
      );
    }
    if (!rows.length) {
      const text = job.status === "FAILED" ? job.error || "failed" : "No measurements yet.";
      rows.push(el("tr", {}, el("td", { colspan: "6", text })));
    }
    ui.jobMeasurements.replaceChildren(...rows);
  }

  function showFacts(job) {
    const result = job.result || {};
    const timings = result.timings_ms || {};
    const facts = [
      ["Status", job.status],
      ["Model", `${job.model}${result.model_version ? ` (version ${result.model_version})` : ""}`],
      ["Image", job.width && job.height ? `${job.width} × ${job.height} px, ${job.image_format || "?"}` : "–"],
      ["Size", job.size_bytes ? formatBytes(job.size_bytes) : "–"],
      ["mm per pixel", job.mm_per_pixel ?? "–"],
      ["Attempts", job.attempts],
      ["Upload to result", job.finished_at ? `${formatNumber((job.finished_at - job.created_at) / 1000, 1)} s` : "–"],
      ["Worker time", timings.total !== undefined ? `${formatNumber(timings.total, 0)} ms` : "–"],
      ["Error", job.error || "–"],
      ["Job id", job.job_id],
    ];
    ui.jobFacts.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
  }

  // --- exports ------------------------------------------------------------------------------------------------
  async function downloadCsv() {
    const batchId = state.batchId;
    setStatus(ui.exportStatus, "Preparing the CSV…");
    try {
      const response = await api(`v1/batches/${batchId}/jobs.csv`, { accept: "text/csv" });
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: `segscale-${batchId}.csv` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      setStatus(ui.exportStatus, "CSV downloaded (one row per job).");
    } catch (err) {
      setStatus(ui.exportStatus, `No CSV: ${err.message}`, true);
    }
  }

  async function openReport() {
    ui.reportLink.hidden = true;
    setStatus(ui.exportStatus, "Looking for the report…");
    try {
      const link = await apiJson(`v1/batches/${state.batchId}/report`);
      ui.reportLink.href = link.url;
      ui.reportLink.hidden = false;
      const minutes = Math.round(link.expires_in_s / 60);
      setStatus(ui.exportStatus, `The report is ready; its link works for ${minutes} minutes.`);
      ui.reportLink.focus();
    } catch (err) {
      setStatus(ui.exportStatus, `No report: ${err.message}`, true);
    }
  }

  // --- wiring -------------------------------------------------------------------------------------------------
  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = ui.keyInput.value.trim();
    if (key) useKey(key);
  });
  ui.forgetKey.addEventListener("click", forgetKey);

  ui.fileInput.addEventListener("change", () => {
    addFiles(Array.from(ui.fileInput.files, (file) => ({ file, inFolder: false })));
    ui.fileInput.value = "";
  });
  ui.folderInput.addEventListener("change", () => {
    addFiles(Array.from(ui.folderInput.files, (file) => ({ file, inFolder: true, path: file.webkitRelativePath })));
    ui.folderInput.value = "";
  });

  // A drop anywhere on the page is an upload (and never makes the browser navigate away to the file).
  let dragDepth = 0;
  document.addEventListener("dragenter", (event) => {
    event.preventDefault();
    dragDepth += 1;
    ui.dropZone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) ui.dropZone.classList.remove("dragging");
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    ui.dropZone.classList.remove("dragging");
    if (ui.uploadSection.hidden) return;
    filesFromDrop(event.dataTransfer).then(addFiles, (err) =>
      setStatus(ui.exportStatus, `Could not read the drop: ${err}`, true),
    );
  });

  ui.downloadCsv.addEventListener("click", downloadCsv);
  ui.openReport.addEventListener("click", openReport);
  ui.newBatch.addEventListener("click", () => {
    state.batchId = null;
    ui.batchSection.hidden = true;
    ui.fileList.replaceChildren();
    setStatus(ui.exportStatus, "");
  });
  ui.jobClose.addEventListener("click", () => ui.dialog.close());
  ui.dialog.addEventListener("close", () => {
    state.openJob = null;
  });
  for (const radio of document.querySelectorAll('input[name="job-view"]')) {
    radio.addEventListener("change", () => {
      if (radio.checked && state.openJob) showJobImage(state.openJob, radio.value);
    });
  }

  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) useKey(saved);
})();
