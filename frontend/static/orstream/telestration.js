// Telestration: drawings over the video, in video coordinates (0..1 on both axes, so a stroke lands
// on the same anatomy on every screen, whatever its size or zoom), with the media time they refer to.
// Tools: freehand (the points drawn), arrow (tail, head), circle (centre, a point on the rim).

const MAX_POINTS = 2000;
const MIN_STEP = 0.002;

export class Telestration {
  // canvas: sits exactly over the video picture. options.send(stroke) sends it; options.mediaTime()
  // gives the media time of the frame on screen; options.tool() / options.color() the current choice.
  constructor(canvas, { editable = false, send = null, mediaTime = () => null, tool = () => "freehand", color = () => "#ffffff" } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.strokes = [];
    this.draft = null;
    this.send = send;
    this.mediaTime = mediaTime;
    this.tool = tool;
    this.color = color;
    new ResizeObserver(() => this.redraw()).observe(canvas);
    if (editable) this.listen();
    this.redraw();
  }

  // An `annotation` message from the server (everyone's strokes, ours included, come back this way).
  apply(annotation) {
    if (annotation.kind === "clear") {
      this.strokes = [];
    } else if (annotation.kind === "stroke") {
      this.strokes.push(annotation);
      if (this.draft && this.draft.stroke_id === annotation.stroke_id) this.draft = null;
    }
    this.redraw();
  }

  // The strokes already on screen when this page joined (the `drawing` of the welcome message).
  restore(annotations) {
    this.strokes = annotations.filter((a) => a.kind === "stroke");
    this.draft = null;
    this.redraw();
  }

  listen() {
    const canvas = this.canvas;
    canvas.style.touchAction = "none";
    canvas.style.cursor = "crosshair";
    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      canvas.setPointerCapture(event.pointerId);
      const point = this.toVideo(event);
      this.draft = {
        kind: "stroke",
        tool: this.tool(),
        color: this.color(),
        points: [point],
        media_time: this.mediaTime(),
        stroke_id: `s${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`,
      };
      this.redraw();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!this.draft || !canvas.hasPointerCapture(event.pointerId)) return;
      const point = this.toVideo(event);
      const points = this.draft.points;
      if (this.draft.tool === "freehand") {
        const last = points[points.length - 1];
        if (Math.hypot(point[0] - last[0], point[1] - last[1]) >= MIN_STEP && points.length < MAX_POINTS) points.push(point);
      } else {
        points[1] = point;
      }
      this.redraw();
    });
    const finish = (event) => {
      if (!this.draft || !canvas.hasPointerCapture(event.pointerId)) return;
      canvas.releasePointerCapture(event.pointerId);
      const draft = this.draft;
      if (draft.points.length < 2) draft.points.push(draft.points[0]);
      const { kind, ...stroke } = draft;
      if (!this.send || !this.send({ type: "stroke", ...stroke })) this.draft = null;
      this.redraw();
    };
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
  }

  toVideo(event) {
    const rect = this.canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)].map((v) => Math.round(v * 1e5) / 1e5);
  }

  redraw() {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * dpr);
    const height = Math.round(canvas.clientHeight * dpr);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = this.ctx;
    ctx.clearRect(0, 0, width, height);
    for (const stroke of this.strokes) this.draw(stroke, width, height);
    if (this.draft) this.draw(this.draft, width, height);
    canvas.dataset.strokes = String(this.strokes.length);
  }

  draw(stroke, width, height) {
    const ctx = this.ctx;
    const points = stroke.points.map(([x, y]) => [x * width, y * height]);
    if (!points.length) return;
    const line = Math.max(3, Math.min(width, height) / 180);
    ctx.save();
    ctx.lineWidth = line;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = stroke.color;
    ctx.fillStyle = stroke.color;
    // A dark halo keeps yellow and white legible on bright tissue and drapes.
    ctx.shadowColor = "rgba(0,0,0,.7)";
    ctx.shadowBlur = line;
    ctx.beginPath();
    if (stroke.tool === "circle") {
      const [c, rim] = [points[0], points[1] || points[0]];
      const radius = Math.max(line, Math.hypot(rim[0] - c[0], rim[1] - c[1]));
      ctx.arc(c[0], c[1], radius, 0, Math.PI * 2);
      ctx.stroke();
    } else if (stroke.tool === "arrow") {
      const [tail, head] = [points[0], points[points.length - 1]];
      ctx.moveTo(tail[0], tail[1]);
      ctx.lineTo(head[0], head[1]);
      ctx.stroke();
      const angle = Math.atan2(head[1] - tail[1], head[0] - tail[0]);
      const size = line * 5;
      ctx.beginPath();
      ctx.moveTo(head[0], head[1]);
      ctx.lineTo(head[0] - size * Math.cos(angle - 0.45), head[1] - size * Math.sin(angle - 0.45));
      ctx.lineTo(head[0] - size * Math.cos(angle + 0.45), head[1] - size * Math.sin(angle + 0.45));
      ctx.closePath();
      ctx.fill();
    } else {
      ctx.moveTo(points[0][0], points[0][1]);
      for (const p of points.slice(1)) ctx.lineTo(p[0], p[1]);
      if (points.length === 1) ctx.lineTo(points[0][0] + 0.1, points[0][1]);
      ctx.stroke();
    }
    ctx.restore();
  }
}

// Build the tool and colour pickers (radio groups: arrow keys move, Space selects) into `container`,
// from `choices`: {tools, colours}, each [{value, name}], as the page's bootstrap carries them
// (mentoring.services.drawing_choices: exactly what the site accepts).
export function buildPickers(container, choices) {
  const group = (legend, name, items, render) => {
    const fieldset = document.createElement("fieldset");
    fieldset.className = "picker";
    fieldset.innerHTML = `<legend>${legend}</legend>`;
    items.forEach((item, index) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = name;
      input.value = item.value;
      input.checked = index === 0;
      label.append(input, render(item));
      fieldset.append(label);
    });
    container.append(fieldset);
  };
  group("Tool", "tool", choices.tools, (item) => document.createTextNode(item.name));
  group("Colour", "colour", choices.colours, (item) => {
    const span = document.createElement("span");
    span.className = "swatch";
    span.style.setProperty("--swatch", item.value);
    span.textContent = item.name;
    return span;
  });
  return {
    tool: () => container.querySelector("input[name=tool]:checked").value,
    color: () => container.querySelector("input[name=colour]:checked").value,
  };
}
