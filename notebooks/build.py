"""Write the notebooks from the cell lists below, execute them, and save them with outputs.

Run from the repository root after changing a notebook here:

    python notebooks/build.py            # all notebooks
    python notebooks/build.py 01         # those whose file name contains "01"

The test suite executes the committed .ipynb files (tests/test_notebooks.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent

SETUP = """\
import os, tempfile, warnings
from pathlib import Path
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: plain progress bars
import transformers; transformers.utils.logging.disable_progress_bar()
%matplotlib inline
work = Path(tempfile.mkdtemp(prefix="mmrag-notebook-"))  # everything this notebook writes goes here
"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_quickstart_store.ipynb": [
        (
            "md",
            "# mmrag quickstart: one store for images and texts\n\n"
            "Index a folder of images and captions into an embedded Chroma store, then search it in all four "
            "directions. The bundled `demo` model is a tiny CLIP trained on synthetic shapes, so this runs "
            "anywhere without a download; swap in `siglip2-base-224` for real photos.",
        ),
        ("code", SETUP),
        (
            "code",
            "import mmrag\nfrom mmrag.demo_data import write_sample_folder\nfrom mmrag.plotting import plot_hits\n\n"
            'paths = write_sample_folder(work / "photos", n=48)\n'
            'encoder = mmrag.load_encoder("demo")\nencoder',
        ),
        (
            "code",
            'store = mmrag.MultimodalStore(encoder, path=work / "db")\n'
            'report = store.index_folder(work / "photos", show_progress=False)  # no bar in the saved output\n'
            "print(report)\n"
            'print(store.count("image"), "images,", store.count("text"), "texts")',
        ),
        ("md", "## Text → image"),
        ("code", 'query = "a yellow circle"\nplot_hits(store.search(query, k=6, modality="image"), query=query);'),
        (
            "md",
            "`search` returns a `HitList`: a plain list of `Hit`s that Jupyter shows as thumbnails and cards "
            "with their scores when it ends a cell.",
        ),
        ("code", 'store.search("a red square", k=4)'),
        ("md", "Chinese queries work too (the demo model was trained on English and Chinese captions):"),
        (
            "code",
            'query = "白色的星形"  # a white star\n'
            'hits = store.search(query, k=6, modality="image")\n'
            'print("query:", query)\n'
            'plot_hits(hits, query="(zh) a white star");  # an English title: not every machine has a CJK font',
        ),
        ("md", "## Image → image and image → text"),
        (
            "code",
            'probe = work / "photos" / "shape_003.png"\n'
            'plot_hits(store.search(str(probe), k=5, modality="image"), query=str(probe));',
        ),
        (
            "code",
            'for hit in store.search(str(probe), k=4, modality="text"):  # shape_031 has the same captions\n'
            '    print(f"{hit.score:.3f}  {hit.text.strip()}  [{Path(hit.source).name}]")',
        ),
        (
            "md",
            "## Text → text, and both modalities at once\n\nWith `modality=None` the image and text result lists "
            "are merged by reciprocal rank fusion, so captions (whose text-text scores are far higher) do not "
            "crowd out images.",
        ),
        (
            "code",
            'for hit in store.search("a small black triangle", k=6):\n'
            "    print(f\"{hit.modality:5}  {hit.score:.3f}  {Path(hit.source).name}  {hit.text.strip() if hit.text else ''}\")",
        ),
        ("code", "store.close()"),
    ],
    "02_llama_index_pipeline.ipynb": [
        (
            "md",
            "# LlamaIndex multimodal RAG with mmrag\n\n`LocalMultiModalEmbedding` serves as both `embed_model` "
            "and `image_embed_model` of a `MultiModalVectorStoreIndex` over two Chroma collections; "
            "`MultimodalStoreRetriever` queries an mmrag store from LlamaIndex.",
        ),
        ("code", SETUP),
        (
            "code",
            "import chromadb\nfrom llama_index.core import SimpleDirectoryReader, StorageContext\n"
            "from llama_index.core.indices import MultiModalVectorStoreIndex\n"
            "from llama_index.core.schema import ImageDocument\n"
            "from llama_index.vector_stores.chroma import ChromaVectorStore\n"
            "from mmrag.demo_data import write_sample_folder\n"
            "from mmrag.llama_index import LocalMultiModalEmbedding\nfrom mmrag.plotting import plot_hits\n\n"
            'write_sample_folder(work / "shapes", n=32, languages=("en",))\n'
            'embed = LocalMultiModalEmbedding(model="demo")\n'
            'client = chromadb.PersistentClient(path=str(work / "chroma"))\n'
            "texts, images = (ChromaVectorStore(chroma_collection=client.get_or_create_collection(\n"
            '    name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None))\n'
            '    for name in ("texts", "images"))\n'
            "storage = StorageContext.from_defaults(vector_store=texts, image_store=images)\n"
            'documents = SimpleDirectoryReader(str(work / "shapes")).load_data()\n'
            'for doc in documents:  # embed a caption, not "file_path: ..." + caption (images keep it: LlamaIndex\n'
            "    if not isinstance(doc, ImageDocument):  # drops nodes that have nothing to embed)\n"
            '        doc.excluded_embed_metadata_keys.append("file_path")\n'
            "index = MultiModalVectorStoreIndex.from_documents(\n"
            "    documents, storage_context=storage, embed_model=embed, image_embed_model=embed)\n"
            "len(documents)",
        ),
        ("md", "LlamaIndex nodes carry an `image_path`; a small adapter lets `plot_hits` draw them."),
        (
            "code",
            "from types import SimpleNamespace\n\n"
            "def as_hits(results):\n"
            '    return [SimpleNamespace(modality="image" if getattr(r.node, "image_path", None) else "text",\n'
            '                            source=getattr(r.node, "image_path", None), text=r.node.get_content(),\n'
            "                            score=r.score) for r in results]\n\n"
            "retriever = index.as_retriever(similarity_top_k=3, image_similarity_top_k=5)\n"
            'plot_hits(as_hits(retriever.text_to_image_retrieve("a yellow triangle")), query="a yellow triangle",\n'
            '          title="score: Chroma\'s exp(-distance)");',
        ),
        (
            "code",
            'probe = str(work / "shapes" / "shape_005.png")\n'
            'plot_hits(as_hits(retriever.image_to_image_retrieve(probe)), query=probe, title="score: Chroma\'s exp(-distance)");',
        ),
        (
            "code",
            "# ChromaVectorStore reports exp(-distance), not the cosine: the order is the same, the numbers differ\n"
            'print("kind  exp(-distance)  item")\n'
            'for result in retriever.retrieve("a small red diamond"):\n'
            '    image = getattr(result.node, "image_path", None)\n'
            '    print("image" if image else "text ", f"{result.score:14.3f} ", Path(image).name if image else result.node.get_content().strip())',
        ),
        ("md", "## Querying an mmrag store from LlamaIndex"),
        (
            "code",
            "import mmrag\nfrom mmrag.llama_index import MultimodalStoreRetriever\n\n"
            'store = mmrag.MultimodalStore(embed.encoder, path=work / "mmrag_db")\n'
            'print(store.index_folder(work / "shapes", show_progress=False))\n'
            "store_retriever = MultimodalStoreRetriever(store, k=4, batcher=embed.batcher)\n"
            'print("cosine  caption")  # an mmrag store scores by cosine similarity\n'
            "for result in store_retriever.image_to_text_retrieve(probe):\n"
            '    print(f"{result.score:6.3f}", result.node.get_content().strip())',
        ),
        (
            "code",
            'results = await store_retriever.atext_to_image_retrieve("an orange circle")\n'
            'plot_hits(as_hits(results), query="an orange circle");',
        ),
        ("code", "store.close()"),
    ],
    "03_langchain_retriever_rerank.ipynb": [
        (
            "md",
            "# LangChain: retrieve from an mmrag store, rerank, and feed a chain\n\n"
            "`MultimodalStoreRetriever` is a LangChain retriever over `mmrag.MultimodalStore`; "
            "`CrossModalReranker` is a document compressor that rescores candidates with a (usually larger) "
            "cross-modal model. Here both use the bundled `demo` model so the notebook runs anywhere; in "
            "practice rerank with BLIP / BLIP-2 ITM heads (`blip-itm-base-coco`, `blip2-itm-vit-g`) or "
            "`bge-reranker-base` for text.",
        ),
        ("code", SETUP),
        (
            "code",
            "import mmrag\nfrom mmrag.demo_data import write_sample_folder\n"
            "from mmrag.langchain import CrossModalReranker, MultimodalStoreRetriever\n"
            "from mmrag.plotting import plot_hits\n\n"
            'write_sample_folder(work / "photos", n=48)\n'
            'store = mmrag.MultimodalStore(mmrag.load_encoder("demo"), path=work / "db")\n'
            'print(store.index_folder(work / "photos", show_progress=False))\n'
            'retriever = MultimodalStoreRetriever(store=store, k=8, modality="image")',
        ),
        (
            "code",
            "from types import SimpleNamespace\n\n"
            'def as_hits(docs, score_key="score"):\n'
            '    return [SimpleNamespace(modality=d.metadata["modality"], source=d.metadata.get("source"),\n'
            "                            text=d.page_content, score=d.metadata[score_key]) for d in docs]\n\n"
            'question = "a white circle"\n'
            "first_stage = retriever.invoke(question)\n"
            'plot_hits(as_hits(first_stage), query=question, title="first stage (cosine)");',
        ),
        (
            "code",
            'reranker = CrossModalReranker(reranker=mmrag.load_reranker("demo"), top_n=4)\n'
            "reranked = reranker.compress_documents(first_stage, question)\n"
            'plot_hits(as_hits(reranked, "relevance_score"), query=question, title="reranked (match probability)");',
        ),
        (
            "md",
            "## In a chain\n\n`ContextualCompressionRetriever` runs retrieval and reranking as one retriever; "
            "a fake chat model stands in for your LLM.",
        ),
        (
            "code",
            "from langchain_classic.retrievers import ContextualCompressionRetriever\n"
            "from langchain_core.language_models.fake_chat_models import FakeListChatModel\n"
            "from langchain_core.prompts import ChatPromptTemplate\n\n"
            "compressed = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=retriever)\n"
            'prompt = ChatPromptTemplate.from_template("Images:\\n{context}\\n\\nQuestion: {question}")\n'
            'format_docs = lambda docs: "\\n".join(f"{d.page_content} ({d.metadata[\'relevance_score\']:.2f})" for d in docs)\n'
            'chain = ({"context": compressed | format_docs, "question": lambda q: q}\n'
            '         | prompt | FakeListChatModel(responses=["The white circle is the first image."]))\n'
            "print(prompt.format(context=format_docs(compressed.invoke(question)), question=question))\n"
            "print(chain.invoke(question).content)",
        ),
        ("code", "store.close()"),
    ],
    "04_http_service_client.ipynb": [
        (
            "md",
            "# The HTTP service from a client\n\nStart `mmrag serve` on a store, then call `/embed`, "
            "`/similarity`, `/search` and the OpenAI-compatible `/v1/embeddings` with httpx and the official "
            "OpenAI client.",
        ),
        ("code", SETUP),
        (
            "code",
            "import socket, subprocess, sys, time\nimport httpx\nimport mmrag\n"
            "from mmrag.demo_data import write_sample_folder\n\n"
            'write_sample_folder(work / "photos", n=32)\n'
            'with mmrag.MultimodalStore(mmrag.load_encoder("demo"), path=work / "db") as store:\n'
            '    print(store.index_folder(work / "photos", show_progress=False))  # closed: the server opens it\n\n'
            'with socket.socket() as s:\n    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]\n'
            'server = subprocess.Popen([sys.executable, "-m", "mmrag", "serve", "--db", str(work / "db"),\n'
            '                           "--port", str(port), "--no-access-log"],\n'
            "                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            'base = f"http://127.0.0.1:{port}"\n'
            'for _ in range(240):\n    try:\n        if httpx.get(f"{base}/ready").status_code == 200: break\n'
            "    except httpx.TransportError:\n        pass\n    time.sleep(0.5)\n"
            'httpx.get(f"{base}/ready").json()',
        ),
        (
            "code",
            'import base64\nimage_b64 = base64.b64encode((work / "photos" / "shape_000.png").read_bytes()).decode()\n'
            'answer = httpx.post(f"{base}/embed", json={"image": image_b64, "text": "a caption"}).json()\n'
            "{key: (len(value) if isinstance(value, list) else value) for key, value in answer.items()}",
        ),
        (
            "code",
            'photos = sorted((work / "photos").glob("*.png"))[:12]\n'
            "names = {base64.b64encode(p.read_bytes()).decode(): p.name for p in photos}  # candidate -> file\n"
            'ranked = httpx.post(f"{base}/similarity", json={\n'
            '    "query": "a large red cross", "query_type": "text", "candidate_type": "image", "candidates": list(names),\n'
            "}).json()\n"
            "# each answer is [candidate, cosine], best first: name the image each score belongs to\n"
            '[(names[candidate], round(score, 3)) for candidate, score in ranked["similarities"]]',
        ),
        (
            "code",
            "from types import SimpleNamespace\nfrom mmrag.plotting import plot_hits\n\n"
            'results = httpx.post(f"{base}/search", json={"query": "a blue star", "k": 6, "modality": "image"}).json()["results"]\n'
            'plot_hits([SimpleNamespace(**r) for r in results], query="a blue star", title="POST /search");',
        ),
        (
            "code",
            "from openai import OpenAI\n"
            'client = OpenAI(base_url=f"{base}/v1", api_key="unused")\n'
            'inputs = ["a red circle", "红色的圆形"]  # the second is Chinese for the first\n'
            'response = client.embeddings.create(model="demo", input=inputs)\n'
            "for text, item in zip(inputs, response.data):\n"
            "    print(text, len(item.embedding))  # printed as written, not as \\u escapes\n"
            "response.usage",
        ),
        (
            "code",
            'bad = httpx.post(f"{base}/embed", json={"image": "http://127.0.0.1:22/x.png"})\n'
            "bad.status_code, bad.json()  # private addresses are refused before any connection",
        ),
        ("code", "server.terminate(); server.wait(timeout=60)"),
    ],
}


NOTEBOOKS["05_composed_search.ipynb"] = [
    (
        "md",
        "# Composed search: an image and a text as one query\n\n"
        '"This shoe, but in red": a composed query is an image plus a text that says how the wanted result differs. '
        "mmrag embeds it with the encoder's own fused vector, `encoder.embed_fused([image], [text]).fused`, for every "
        "family: for dual encoders (CLIP, SigLIP, the bundled `demo` model) the normalised sum of the image and text "
        "vectors; for Visualized-BGE its joint image+text encoding (`encode_mm`). A store can also hold image-text "
        "*pairs* (`store.add_pairs`), one fused vector each, in a third collection `<name>_pairs`.\n\n"
        "This notebook repeats the shape of the Visualized-BGE experiment (image vs image, composed vs image, text vs "
        "composed, composed vs composed) with the tiny `demo` model, so it runs anywhere without a download.",
    ),
    ("code", SETUP),
    (
        "code",
        "import numpy as np\nimport mmrag\nfrom mmrag.demo_data import ShapeSample\n\n"
        'encoder = mmrag.load_encoder("demo")\n'
        'query_image = ShapeSample("red", "circle", "large", "left", variant=1).render()\n'
        "candidates = {  # name -> (sample, its caption)\n"
        '    "red circle": ShapeSample("red", "circle", "large", "left", variant=2),\n'
        '    "blue circle": ShapeSample("blue", "circle", "large", "left", variant=3),\n'
        '    "blue square": ShapeSample("blue", "square", "large", "right", variant=4),\n'
        '    "green circle": ShapeSample("green", "circle", "large", "left", variant=5),\n'
        '    "small blue circle": ShapeSample("blue", "circle", "small", "right", variant=6),\n'
        "}\n"
        'folder = work / "candidates"; folder.mkdir()\n'
        "paths = []\n"
        "for name, sample in candidates.items():\n"
        "    paths.append(folder / f\"{name.replace(' ', '_')}.png\"); sample.render().save(paths[-1])\n"
        'captions = [sample.caption(detail="colour_shape") for sample in candidates.values()]\n'
        'query_image.save(work / "query.png"); captions',
    ),
    (
        "md",
        "## The four comparisons\n\n"
        'The query is a red circle and the instruction `"blue"`: the wanted result is a *blue circle*. Each row '
        "is one way of comparing, each column one candidate (cosine similarity; the best candidate of a row is "
        "marked `*`).",
    ),
    (
        "code",
        "images = encoder.embed_images(paths)                              # candidates as images\n"
        "pairs = encoder.embed_fused(paths, captions).fused                # candidates as image + caption\n"
        "image_q = encoder.embed_images([query_image])[0]\n"
        'composed_q = encoder.embed_fused([query_image], ["blue"]).fused[0]  # the composed query\n'
        'text_q = encoder.embed_texts(["a blue circle"])[0]\n'
        "rows = {\n"
        '    "image vs image": images @ image_q,\n'
        '    "composed vs image": images @ composed_q,\n'
        '    "text vs composed": pairs @ text_q,\n'
        '    "composed vs composed": pairs @ composed_q,\n'
        "}\n"
        'print(f"{\'\':22}" + "".join(f"{name:>19}" for name in candidates))\n'
        "for label, scores in rows.items():\n"
        '    print(f"{label:22}" + "".join(f"{s:>18.3f}{\'*\' if s == scores.max() else \' \'}" for s in scores))',
    ),
    (
        "md",
        "Image vs image finds the red circle (same pixels, nearly); adding the word *blue* moves the composed query "
        "to the blue circle, in both the composed-vs-image and the composed-vs-composed rows, and the plain text "
        '"a blue circle" finds the blue circles among the stored pairs.\n\n'
        "## The same through the store\n\n"
        '`store.search(text, image=...)` is the composed query; `modality="pair"` searches the stored pairs.',
    ),
    (
        "code",
        "from mmrag.plotting import plot_hits\n\n"
        'store = mmrag.MultimodalStore(encoder, path=work / "db")\n'
        "store.add_images(paths)\n"
        "print(store.add_pairs(paths, captions))\n"
        'hits = store.search("blue", image=query_image, k=5, modality="image")\n'
        'plot_hits(hits, query=query_image, title="red circle + \\"blue\\" -> images");',
    ),
    (
        "code",
        'hits = store.search("blue", image=query_image, k=5, modality="pair")\n'
        'plot_hits(hits, query=query_image, title="red circle + \\"blue\\" -> image-text pairs");',
    ),
    (
        "code",
        'for hit in store.search("blue", image=query_image, k=6):  # all modalities, merged by rank\n'
        "    print(f\"{hit.score:.3f}  {hit.modality:5}  {Path(hit.source).name:24} {hit.text or ''}\")\n"
        "store.close()",
    ),
    (
        "md",
        "## What a real checkpoint shows\n\n"
        "The demo model knows only colours, shapes, sizes and positions, and its fused vector is a plain sum, so "
        'a composed query here is "the image, pulled towards the words". A real Visualized-BGE checkpoint '
        "(`bge-visualized-base-en` or `bge-visualized-m3`, weights from the hub repo `BAAI/bge-visualized`) "
        "encodes the image tokens and the text *together* in one BGE pass, trained for composed image retrieval "
        "and multimodal queries. That is the point of the seed's example (a photo plus \"Make the background "
        'dark, as if the camera has taken the photo at night"): the composed query is meant to prefer a '
        "night-time photo of the same scene, which image vs image cannot tell from the original and a sum of "
        "vectors handles poorly. (This notebook does not download it: the weights are several hundred MB.) "
        "The code above runs unchanged with it: "
        "only the `load_encoder(...)` line changes, and `fused` is then the joint encoding rather than a sum. "
        "CLIP and SigLIP checkpoints give the sum baseline shown here, which works for attribute edits "
        '("in red", "as a square") but not for instructions.',
    ),
]


def build(name: str, cells: list[tuple[str, str]]) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        for kind, source in cells
    ]
    with tempfile.TemporaryDirectory() as cwd:
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
    target = HERE / name
    nbformat.write(notebook, target)
    return target


def main(argv: list[str]) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name, cells in NOTEBOOKS.items():
        if not argv or any(part in name for part in argv):
            print("built", build(name, cells))


if __name__ == "__main__":
    main(sys.argv[1:])
